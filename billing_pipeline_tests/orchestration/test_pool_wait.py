"""A run whose op waits for a pool slot sleeps until its next claim check instead of spinning.

Dagster 1.13's ``interval_to_next_pending_claim_check`` never asks for a positive sleep, so the
waiting run worker loops on a core (measured: ~48 ms of CPU per delivered invoice with three
delivery runs at once). ``defs.dagster_internals.sleep_while_waiting_for_pool_slots``, applied
when the definitions load, makes it sleep. The run here is a real process on a real instance
whose pool slot another run holds; its CPU is read from /proc while it waits.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from billing_pipeline.defs import dagster_internals

WAITER = textwrap.dedent(
    """
    import sys
    import dagster as dg
    if sys.argv[1] == "fixed":
        from billing_pipeline.defs.dagster_internals import sleep_while_waiting_for_pool_slots
        sleep_while_waiting_for_pool_slots()

    @dg.op(pool="held")
    def waits():
        pass

    @dg.job
    def pool_job():
        waits()

    print("ready", flush=True)
    pool_job.execute_in_process(instance=dg.DagsterInstance.get())
    """
)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_while_waiting(home: Path, variant: str, seconds: float = 4.0) -> float:
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-c", WAITER, variant], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(3.0)  # the run has started and asked for the slot
        assert proc.poll() is None, "the run finished: it was not waiting for the pool"
        before = _cpu_seconds(proc.pid)
        time.sleep(seconds)
        return _cpu_seconds(proc.pid) - before
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def held_pool(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("concurrency:\n  pools:\n    granularity: op\n")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.event_log_storage.set_concurrency_slots("held", 1)
        claim = instance.event_log_storage.claim_concurrency_slot("held", "another-run", "its-step")
        assert claim.is_claimed
    return home


def test_a_run_waiting_for_a_pool_slot_sleeps(held_pool):
    spent = _cpu_while_waiting(held_pool, "fixed")
    assert spent < 0.5, f"the waiting run used {spent:.2f} s of CPU in 4 s"


def test_the_fix_applies_only_while_dagster_spins():
    from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext

    dagster_internals.sleep_while_waiting_for_pool_slots()
    assert not dagster_internals._pool_wait_spins(InstanceConcurrencyContext)  # noqa: SLF001
    assert dagster_internals.sleep_while_waiting_for_pool_slots() is False  # nothing left to fix
