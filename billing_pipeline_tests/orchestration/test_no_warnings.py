"""The project's own commands print no Dagster beta, supersession or configuration warnings."""

import os
import subprocess
import sys
from pathlib import Path

CLI = Path(sys.executable).parent / "billing-pipeline"


def test_status_in_a_fresh_home_prints_no_warning(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BILLING_", "DAGSTER_")) and k != "PYTHONWARNINGS"}
    env |= {"BILLING_HOME": str(tmp_path / "billing"), "DAGSTER_HOME": str(tmp_path / "dagster")}
    subprocess.run([CLI, "init-db"], env=env, cwd=tmp_path, check=True, capture_output=True)
    done = subprocess.run([CLI, "status"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "daemon: not running" in done.stdout
    assert "warning" not in output.lower(), output
    assert "No dagster instance configuration file" not in output  # the CLI wrote an empty dagster.yaml
