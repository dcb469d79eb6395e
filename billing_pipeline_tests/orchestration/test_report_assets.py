"""The report assets materialized for one partition each (SQLite, local store, outbox): the
numbers in metadata, the documents stored once, the e-mail written once per partition on re-runs."""

from __future__ import annotations

import datetime as dt
import email
import email.policy

import dagster as dg
import pytest

from billing_pipeline import definitions
from billing_pipeline.db import report_deliveries
from billing_pipeline.db.engine import get_engine
from billing_pipeline.definitions import build_definitions
from billing_pipeline.settings import Settings
from billing_pipeline_tests import report_data
from billing_pipeline_tests.builders import setup_database


@pytest.fixture
def env(tmp_path):
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    settings = Settings.from_env({"BILLING_HOME": str(tmp_path), "BILLING_DATABASE_URL": url})
    setup_database(url)
    report_data.seed(get_engine(url))
    return settings, tmp_path


def _assets(recipients=("finance@example.com", "cfo@example.com")):
    """The two report assets as the definitions build them, with recipients configured."""
    from billing_pipeline.defs import reports

    mail = {"recipients": recipients, "sender": "billing@example.com"}
    return (reports.ar_aging_report_asset(definitions.ar_aging_report_partitions, **mail),
            reports.mrr_report_asset(definitions.mrr_report_partitions, **mail))  # fmt: skip


def _materialize(asset, settings, key):
    resources = build_definitions(settings).resources
    with dg.instance_for_test() as instance:
        result = dg.materialize([asset], partition_key=key, resources=resources, instance=instance)
    assert result.success
    (mat,) = result.asset_materializations_for_node(asset.op.name)
    return mat.metadata


def test_ar_aging_report_partition_twice_one_email(env):
    settings, home = env
    aging, _ = _assets()
    assert definitions.ar_aging_report_partitions.time_window_for_partition_key("2026-11-23").end == dt.datetime(
        2026, 11, 30, 7, tzinfo=dt.UTC
    )
    meta = _materialize(aging, settings, "2026-11-23")
    assert meta["as_of"].value == "2026-11-30" and meta["open_invoices"].value == 4
    assert meta["total_due_USD"].value == 95.0 and meta["past_due_JPY"].value == 4000.0
    table = meta["aging"].value
    assert "| **USD** | **total** | 0.00 USD | 15.00 USD | 80.00 USD | 0.00 USD | 0.00 USD | **95.00 USD** |" in table
    assert "4,000 JPY" in table and "200.00 EUR" in table
    assert meta["email"].value == "sent"
    again = _materialize(aging, settings, "2026-11-23")
    assert again["email"].value == "already sent" and again["pdf_sha256"].value == meta["pdf_sha256"].value
    outbox = list((home / "outbox").glob("*.eml"))
    assert [p.name for p in outbox] == ["report-ar_aging-2026-11-30@example.com.eml"]
    msg = email.message_from_bytes(outbox[0].read_bytes(), policy=email.policy.default)
    assert msg["To"] == "finance@example.com, cfo@example.com"
    assert [p.get_filename() for p in msg.iter_attachments()] == ["ar_aging_2026-11-30.pdf", "ar_aging_2026-11-30.csv"]
    stored = sorted(p.relative_to(home / "documents").as_posix() for p in (home / "documents").rglob("*.*"))
    assert stored == ["reports/ar_aging/2026-11-30/ar_aging_2026-11-30.csv",
                      "reports/ar_aging/2026-11-30/ar_aging_2026-11-30.pdf"]  # fmt: skip
    row = report_deliveries.get(get_engine(settings.database_url), "ar_aging", "2026-11-30")
    assert (row.status, row.attempts) == ("succeeded", 1)


def test_mrr_report_partition_numbers_and_one_email(env):
    settings, home = env
    _, mrr = _assets()
    meta = _materialize(mrr, settings, "2026-11-01")
    assert meta["month"].value == "2026-11"
    assert (meta["mrr_USD"].value, meta["arr_EUR"].value, meta["customers_JPY"].value) == (20.0, 1188.0, 1)
    summary = meta["summary"].value
    assert "| churn | -10.00 USD |" in summary and "| reactivation | 10.00 USD |" in summary
    assert "| new | 99.00 EUR |" in summary and "| invoiced usage | 101.00 EUR |" in summary
    assert "2026-11: 20.00 USD" in summary
    _materialize(mrr, settings, "2026-11-01")
    assert [p.name for p in (home / "outbox").glob("*.eml")] == ["report-mrr-2026-11@example.com.eml"]


def test_without_recipients_the_reports_are_stored_and_not_sent(env):
    settings, home = env
    aging, _ = _assets(recipients=())
    meta = _materialize(aging, settings, "2026-11-23")
    assert meta["email"].value == "no recipients" and not (home / "outbox").exists()
    assert (home / "documents/reports/ar_aging/2026-11-30/ar_aging_2026-11-30.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.parametrize(
    ("name", "tick", "partition"),
    [
        ("ar_aging_report_schedule", dt.datetime(2026, 11, 30, 7, 0, tzinfo=dt.UTC), "2026-11-23"),
        ("ar_aging_report_schedule", dt.datetime(2026, 11, 30, 6, 59, tzinfo=dt.UTC), "2026-11-16"),
        ("mrr_report_schedule", dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC), "2026-11-01"),
        ("mrr_report_schedule", dt.datetime(2026, 12, 15, 8, 0, tzinfo=dt.UTC), "2026-11-01"),
        ("daily_analytics_report_schedule", dt.datetime(2026, 12, 1, 2, 0, tzinfo=dt.UTC), "2026-11-30"),
        ("weekly_bi_report_schedule", dt.datetime(2026, 11, 29, 3, 0, tzinfo=dt.UTC), "2026-11-22"),
    ],
)
def test_report_schedules_request_the_last_closed_partition_once(name, tick, partition):
    defs = definitions.defs
    schedule = defs.resolve_schedule_def(name)
    with dg.instance_for_test() as instance:
        ctx = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick,
                                        repository_def=defs.get_repository_def())  # fmt: skip
        (request,) = schedule.evaluate_tick(ctx).run_requests
        assert (request.partition_key, request.run_key) == (partition, partition)
        # a run of this schedule for the partition exists: another tick requesting it (a run key is
        # deduped within one tick only) launches nothing
        tags = {"dagster/schedule_name": name, "dagster/partition": partition}
        instance.add_run(dg.DagsterRun(job_name=schedule.job_name, run_id="r1", tags=tags))
        later = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick + dt.timedelta(seconds=30),
                                          repository_def=defs.get_repository_def())  # fmt: skip
        result = schedule.evaluate_tick(later)
        assert not result.run_requests and "already launched" in result.skip_message


def test_weekly_bi_report_week_by_hand(env):
    settings, home = env
    from billing_pipeline.defs import reports

    asset = reports.weekly_bi_report_asset(definitions.weekly_bi_report_partitions, recipients=(),
                                           sender="billing@example.com")  # fmt: skip
    meta = _materialize(asset, settings, "2026-11-01")  # Sunday 1 to Saturday 7 November
    assert meta["first_day"].value == "2026-11-01"
    assert (meta["invoiced_EUR"].value, meta["collected_USD"].value) == (200.0, 25.0)
    week = meta["week"].value
    assert "| USD | 2026-11-02 | 0.00 USD | 25.00 USD |" in week and "| EUR | 2026-11-05 | 200.00 EUR |" in week
    assert week.count("| JPY |") == 7
    pdf = home / "documents/reports/weekly_bi/2026-11-01/weekly_bi_2026-11-01.pdf"
    assert pdf.read_bytes().startswith(b"%PDF")
