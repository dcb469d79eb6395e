"""Processes that render PDFs exit cleanly (WeasyPrint's cached objects are released before finalization)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent

RENDER_AFTER_LOADING_DEFINITIONS = """
import billing_pipeline.definitions  # loading the definitions first is what made the exit crash
from billing_pipeline.rendering import pdf

for _ in range(3):
    assert pdf.html_to_pdf("<p>exit <b>cleanly</b></p>").startswith(b"%PDF")
print("rendered")
"""


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BILLING_", "DAGSTER_PG_"))}
    (tmp_path / "dagster").mkdir(exist_ok=True)
    (tmp_path / "dagster" / "dagster.yaml").write_text("telemetry: {enabled: false}\n")
    return env | {"BILLING_HOME": str(tmp_path / "billing"), "DAGSTER_HOME": str(tmp_path / "dagster")}


def test_a_process_that_rendered_pdfs_exits_with_code_0(tmp_path):
    for _ in range(3):  # the crash was not every time
        done = subprocess.run(
            [sys.executable, "-c", RENDER_AFTER_LOADING_DEFINITIONS],
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert (done.returncode, done.stdout.strip()) == (0, "rendered"), done.stderr[-3000:]


def test_demo_exits_with_code_0_from_a_fresh_state(tmp_path):
    done = subprocess.run(
        [str(BIN / "billing-pipeline"), "demo"], env=_env(tmp_path), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    assert "failures: 0" in done.stdout, done.stdout
