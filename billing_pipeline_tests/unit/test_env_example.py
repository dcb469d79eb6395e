""".env.example is sourceable as the README says, loads as settings, and lists every variable the code reads."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from billing_pipeline.settings import Settings

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / ".env.example"
# every way the package reads a variable: the settings table, EnvVar, os.environ / getenv
READS = re.compile(
    r"""(?:\b_Var\(\s*|\br\.\w+\(\s*|EnvVar\(\s*|_env\(\s*|environ\.get\(\s*|environ\[\s*|getenv\(\s*)["']([A-Z][A-Z0-9_]+)["']"""
)
NOT_OURS = {"DAGSTER_DEPLOYMENT"}  # read by nothing here; listed only if the code starts to


def sourced(tmp_path: Path) -> dict[str, str]:
    """The variables after ``set -a; . ./.env; set +a`` in a clean bash, run from a copy of the repo root."""
    (tmp_path / ".env").write_text(EXAMPLE.read_text())
    script = (
        f"set -eu; set -a; . ./.env; set +a; {sys.executable} -c 'import json, os; print(json.dumps(dict(os.environ)))'"
    )
    done = subprocess.run(
        ["bash", "--norc", "-c", script],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0 and not done.stderr, done.stderr
    return json.loads(done.stdout)


def test_sourcing_runs_no_command_and_gives_absolute_paths(tmp_path):
    env = sourced(tmp_path)
    assert env["HOURLY_USAGE_CRON"] == "5 * * * *" and env["SELLER_NAME"] == "Example Cloud Ltd"
    assert env["DAGSTER_HOME"] == str(tmp_path / ".dagster_home")
    assert Path(env["BILLING_HOME"]).is_absolute()


def test_the_sourced_values_load_as_settings(tmp_path):
    settings = Settings.from_env(sourced(tmp_path))
    assert settings.home == tmp_path / ".billing_home"
    assert settings.hourly_usage_cron == "5 * * * *"


def test_every_variable_the_package_reads_is_listed():
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", EXAMPLE.read_text(), re.M))
    read = {m for path in (REPO / "billing_pipeline").rglob("*.py") for m in READS.findall(path.read_text())}
    assert read, "the pattern finds no variable: it no longer matches how settings are read"
    assert sorted(read - listed - NOT_OURS) == []
