"""Health: the transition rule (one notice per change), its state, and the probe runner."""

import datetime as dt
import threading
import time

import pytest

from billing_pipeline.clients.health import Probe, folder_probe, not_configured, run_probes
from billing_pipeline.domain.health import (
    ComponentState,
    HealthChange,
    HealthResult,
    HealthStatus,
    Transition,
    apply_results,
    transition,
)

UTC = dt.UTC
T0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
UP, DOWN, NONE = HealthStatus.UP, HealthStatus.DOWN, HealthStatus.NOT_CONFIGURED


def result(status, minutes=0, component="mailer", detail="d"):
    return HealthResult(component, status, 1.5, detail, T0 + dt.timedelta(minutes=minutes))


def state(healthy, minutes=0, component="mailer"):
    at = T0 + dt.timedelta(minutes=minutes)
    return ComponentState(component, healthy, since=at, checked_at=at)


@pytest.mark.parametrize(
    "previous, status, expected",
    [
        (None, UP, Transition.UNCHANGED),
        (None, NONE, Transition.UNCHANGED),
        (None, DOWN, Transition.BECAME_UNHEALTHY),
        (True, UP, Transition.UNCHANGED),
        (True, NONE, Transition.UNCHANGED),
        (True, DOWN, Transition.BECAME_UNHEALTHY),
        (False, DOWN, Transition.UNCHANGED),
        (False, UP, Transition.RECOVERED),
        (False, NONE, Transition.RECOVERED),
    ],
)
def test_transition_rule(previous, status, expected):
    before = None if previous is None else state(previous)
    assert transition(before, result(status, minutes=15)) is expected


def test_down_for_many_probes_is_one_notice_each_way():
    sequence = [UP, UP, DOWN, DOWN, DOWN, UP, UP, DOWN]
    states, notices = {}, []
    for i, status in enumerate(sequence):
        states, changes = apply_results(states, [result(status, minutes=15 * i)])
        notices += changes
    assert [(c.transition, c.at) for c in notices] == [
        (Transition.BECAME_UNHEALTHY, T0 + dt.timedelta(minutes=30)),
        (Transition.RECOVERED, T0 + dt.timedelta(minutes=75)),
        (Transition.BECAME_UNHEALTHY, T0 + dt.timedelta(minutes=105)),
    ]
    assert states["mailer"].since == T0 + dt.timedelta(minutes=105) and not states["mailer"].healthy
    assert len({c.dedupe_key for c in notices}) == 3


def test_dedupe_key_is_component_transition_and_the_previous_probe_time():
    states, _ = apply_results({}, [result(UP)])
    _, [first] = apply_results(states, [result(DOWN, minutes=15, detail="refused")])
    _, [second] = apply_results(states, [result(DOWN, minutes=16, detail="timeout")])  # a run that overlapped
    assert first.dedupe_key == second.dedupe_key == "service_health:mailer:became_unhealthy:2026-11-02T09:00:00+00:00"
    assert first.subject == "mailer is unhealthy"


def test_a_first_probe_that_is_down_is_told_keyed_by_its_own_time():
    _, [change] = apply_results({}, [result(DOWN, minutes=5)])
    assert change.dedupe_key.endswith(":became_unhealthy:2026-11-02T09:05:00+00:00")


def test_components_are_independent_and_unprobed_ones_are_kept():
    states, _ = apply_results({}, [result(UP, component="database"), result(UP, component="mailer")])
    states, changes = apply_results(states, [result(DOWN, 15, component="database")])
    assert [(c.component, c.transition) for c in changes] == [("database", Transition.BECAME_UNHEALTHY)]
    assert states["mailer"].healthy and not states["database"].healthy


def test_a_result_older_than_the_stored_state_changes_nothing():
    stored = {"mailer": state(True, minutes=30)}
    states, changes = apply_results(stored, [result(DOWN, minutes=15)])
    assert changes == [] and states == stored


def test_state_and_change_round_trip_through_json_dicts():
    states, [change] = apply_results({"mailer": state(True)}, [result(DOWN, 15, detail="refused")])
    assert ComponentState.from_dict(states["mailer"].to_dict()) == states["mailer"]
    assert HealthChange.from_dict(change.to_dict()) == change
    assert change.to_dict()["dedupe_key"] == change.dedupe_key


def test_times_must_be_aware():
    with pytest.raises(ValueError, match="checked_at: must be an aware UTC time"):
        HealthResult("mailer", UP, 1.0, "", dt.datetime(2026, 11, 2, 9, 0))


def test_run_probes_turns_errors_and_silence_into_down_and_keeps_order():
    release = threading.Event()

    def hangs():
        release.wait(10)
        return UP, "late"

    def fails():
        raise ConnectionRefusedError("connect to sk_test_abc123 refused, password hunter22")

    probes = [
        Probe("database", lambda: (UP, "fine")),
        Probe("payment_gateway", fails, secrets=("hunter22",)),
        Probe("document_store", hangs),
        not_configured("mailer", "no mailer"),
    ]
    started = time.monotonic()
    try:
        results = run_probes(probes, timeout=1, clock=lambda: T0)
    finally:
        release.set()
    assert time.monotonic() - started < 3
    assert [(r.component, r.status) for r in results] == [
        ("database", UP),
        ("payment_gateway", DOWN),
        ("document_store", DOWN),
        ("mailer", NONE),
    ]
    assert "hunter22" not in results[1].detail and "sk_test_abc123" not in results[1].detail
    assert results[1].detail.startswith("ConnectionRefusedError: ")
    assert results[2].detail == "no answer within 1 s" and results[2].latency_ms >= 1000
    assert all(r.checked_at == T0 for r in results)


def test_folder_probe_writes_in_the_folder_or_its_nearest_parent(tmp_path):
    existing = tmp_path / "outbox"
    existing.mkdir()
    [up] = run_probes([folder_probe("mailer", existing, "outbox folder")], timeout=5)
    assert up.status is UP and up.detail == f"outbox folder {existing} writable"
    assert list(existing.iterdir()) == []  # the probe's file is gone
    [later] = run_probes([folder_probe("mailer", tmp_path / "a" / "b", "outbox folder")], timeout=5)
    assert later.status is UP and "created on first write" in later.detail
    assert not (tmp_path / "a").exists()


def test_folder_probe_under_a_file_is_down(tmp_path):
    blocker = tmp_path / "documents"
    blocker.write_text("not a folder")
    [down] = run_probes([folder_probe("document_store", blocker / "inner", "document folder")], timeout=5)
    assert down.status is DOWN and "is not a folder" in down.detail
