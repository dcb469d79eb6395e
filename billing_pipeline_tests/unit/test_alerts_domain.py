"""The alert texts and dedupe keys, and the failure-rate rule: once per crossing, cleared once."""

import datetime as dt

import pytest

from billing_pipeline.domain.alerts import Alert, FailedRun, failure_rate_changes, health_alert, run_failure_alert
from billing_pipeline.domain.health import HealthChange, Transition

NOW = dt.datetime(2026, 11, 3, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(hours=24)
UI = "http://127.0.0.1:3000"


def failures(job: str, n: int, *, start: dt.datetime = NOW - dt.timedelta(hours=1)) -> list[FailedRun]:
    return [FailedRun(f"{job}-run-{i:02d}", job, start + dt.timedelta(seconds=i)) for i in range(n)]


def test_a_failed_run_alert_names_job_partition_error_and_link():
    alert = run_failure_alert(
        run_id="abc123",
        job_name="monthly_invoices_job",
        tags={"dagster/partition": "2026-10-01|acme"},
        error="boom: organization acme has no plan",
        webserver_url=UI + "/",
    )
    assert alert.dedupe_key == "run_failure:abc123"
    assert alert.subject == "Run failed: monthly_invoices_job (2026-10-01|acme)"
    assert alert.link == "http://127.0.0.1:3000/runs/abc123"
    assert "Error: boom: organization acme has no plan" in alert.text
    assert "Partitions: 2026-10-01|acme" in alert.text


def test_a_ranged_run_shows_its_range_and_a_long_error_is_cut():
    tags = {
        "dagster/asset_partition_range_start": "2026-10-01|acme",
        "dagster/asset_partition_range_end": "2026-10-01|zed",
    }
    alert = run_failure_alert(run_id="r", job_name="j", tags=tags, error="x" * 5000, webserver_url=UI)
    assert "Partitions: 2026-10-01|acme … 2026-10-01|zed" in alert.text
    assert len(alert.text) < 2300


def test_eleven_failures_cross_once_and_stay_in_alarm_without_a_second_notice():
    changes, in_alarm = failure_rate_changes(failures("j", 11), {}, threshold=10, window=DAY, now=NOW)
    assert [(c.job_name, c.over, c.failures, c.crossing) for c in changes] == [("j", True, 11, "j-run-10")]
    assert in_alarm == {"j": "j-run-10"}
    more, still = failure_rate_changes(failures("j", 15), in_alarm, threshold=10, window=DAY, now=NOW)
    assert more == [] and still == in_alarm


@pytest.mark.parametrize("n", [0, 9, 10])
def test_ten_or_fewer_failures_are_no_alert(n):
    assert failure_rate_changes(failures("j", n), {}, threshold=10, window=DAY, now=NOW) == ([], {})


def test_back_under_the_threshold_clears_once_and_a_new_crossing_alerts_again():
    _, in_alarm = failure_rate_changes(failures("j", 11), {}, threshold=10, window=DAY, now=NOW)
    later = NOW + DAY  # the window slid past the failures
    changes, after = failure_rate_changes(failures("j", 11), in_alarm, threshold=10, window=DAY, now=later)
    assert [(c.over, c.crossing, c.failures) for c in changes] == [(False, "j-run-10", 0)]
    assert after == {}
    cleared = changes[0].alert(UI)
    assert cleared.dedupe_key == "failure_rate:j:j-run-10:under" and cleared.kind == "failure_rate_cleared"
    again = failures("j", 11, start=later - dt.timedelta(minutes=30))
    changes, _ = failure_rate_changes(again, after, threshold=10, window=DAY, now=later)
    assert [c.over for c in changes] == [True]


def test_the_window_boundary_is_exclusive_at_the_start():
    at_start = [FailedRun(f"r{i}", "j", NOW - DAY) for i in range(11)]
    assert failure_rate_changes(at_start, {}, threshold=10, window=DAY, now=NOW) == ([], {})
    inside = [FailedRun(f"r{i}", "j", NOW - DAY + dt.timedelta(microseconds=1)) for i in range(11)]
    assert len(failure_rate_changes(inside, {}, threshold=10, window=DAY, now=NOW)[0]) == 1


def test_jobs_are_counted_apart():
    runs = failures("a", 11) + failures("b", 10)
    changes, after = failure_rate_changes(runs, {}, threshold=10, window=DAY, now=NOW)
    assert [c.job_name for c in changes] == ["a"] and set(after) == {"a"}


def test_health_alerts_keep_the_change_key():
    change = HealthChange("mailer", Transition.BECAME_UNHEALTHY, NOW, NOW - dt.timedelta(minutes=15), "refused")
    alert = health_alert(change, UI)
    assert alert.dedupe_key == change.dedupe_key and alert.level == "error"
    assert alert.subject == "mailer is unhealthy"


def test_bad_alerts_are_refused():
    with pytest.raises(ValueError, match="level"):
        Alert("k", "run_failure", "fatal", "s", "t")
    with pytest.raises(ValueError, match="dedupe_key"):
        Alert("a key", "run_failure", "error", "s", "t")


def test_invoice_failures_list_the_organizations_sorted_and_cut_at_fifty():
    from billing_pipeline.domain.alerts import invoice_failures_alert

    errors = {f"org{i:03d}": ("pricing", f"no plan\nTraceback line {i}") for i in range(60)}
    alert = invoice_failures_alert(interval="monthly", period_key="2026-10-01", errors=errors, webserver_url=UI)
    lines = alert.text.splitlines()
    assert alert.dedupe_key == "invoice_failures:monthly:2026-10-01"
    assert lines[1] == "org000: pricing: no plan" and lines[50] == "org049: pricing: no plan"
    assert lines[51] == "... and 10 more (billing-pipeline status --period 2026-10-01)"
    with pytest.raises(ValueError, match="at least one"):
        invoice_failures_alert(interval="monthly", period_key="2026-10-01", errors={}, webserver_url=UI)


def test_late_usage_pending_is_one_alert_per_distinct_backlog():
    from dataclasses import dataclass
    from decimal import Decimal

    from billing_pipeline.domain.alerts import late_usage_alert

    @dataclass(frozen=True)
    class Pending:
        org_id: str
        source_number: str
        period_label: str
        charge_code: str
        amount: Decimal
        currency: str
        state: str

    a = Pending("acme", "INV-2026-000001", "October 2026", "api_calls", Decimal("1.50"), "USD", "not on an invoice yet")
    b = Pending(
        "zed", "INV-2026-000002", "October 2026", "storage", Decimal("-2.00"), "EUR", "review: less than billed"
    )
    first = late_usage_alert([b, a], webserver_url=UI)
    assert first is not None and first.subject == "2 late-usage adjustment(s) pending"
    assert first.text.splitlines()[1] == "acme October 2026 INV-2026-000001 api_calls 1.50 USD: not on an invoice yet"
    assert late_usage_alert([a, b], webserver_url=UI).dedupe_key == first.dedupe_key  # order does not matter
    assert late_usage_alert([a], webserver_url=UI).dedupe_key != first.dedupe_key  # a changed backlog is told
    assert late_usage_alert([], webserver_url=UI) is None
