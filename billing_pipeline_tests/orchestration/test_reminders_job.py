"""The reminders schedule and job: the tick is the run's as_of, the summary is the metadata, re-runs send nothing."""

import datetime as dt
import email

import dagster as dg
import pytest

from billing_pipeline import definitions
from billing_pipeline.definitions import build_definitions
from billing_pipeline.settings import Settings
from billing_pipeline_tests.dunning_builders import UTC, add_finalized_invoice, customer, reminders_database

ISSUED = dt.datetime(2026, 3, 1, tzinfo=UTC)  # due 2026-03-31


@pytest.fixture
def settings(tmp_path):
    settings = Settings.from_env({"BILLING_HOME": str(tmp_path)})
    engine = reminders_database(settings.database_url, [customer("acme", account_manager_email="am@seller.test")])
    add_finalized_invoice(engine, "acme", "INV-2026-000001", issued=ISSUED)
    add_finalized_invoice(engine, "acme", "INV-2026-000002", issued=ISSUED, total_minor=5_000, period_key="2026-01-01")
    return settings


def request_at(tick: dt.datetime) -> dg.RunRequest:
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
        return definitions.send_payment_reminders_job_schedule.evaluate_tick(context).run_requests[0]


def test_the_schedule_runs_daily_at_nine_utc_and_passes_its_tick_as_as_of():
    schedule = definitions.send_payment_reminders_job_schedule
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 9 * * *", "UTC")
    assert schedule.default_status is dg.DefaultScheduleStatus.RUNNING
    request = request_at(dt.datetime(2026, 4, 14, 9, 0, tzinfo=UTC))
    assert request.run_key == "reminders-2026-04-14T09:00"
    assert request.run_config == {"ops": {"payment_reminders": {"config": {"as_of": "2026-04-14T09:00:00+00:00"}}}}


def test_the_job_sends_the_day_s_reminders_and_reports_them_in_metadata(settings, tmp_path):
    job = build_definitions(settings).resolve_job_def("send_payment_reminders_job")
    request = request_at(dt.datetime(2026, 4, 14, 9, 0, tzinfo=UTC))
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(run_config=request.run_config, instance=instance)
        assert result.success
        [materialization] = result.asset_materializations_for_node("payment_reminders")
        meta = {k: v.value for k, v in materialization.metadata.items()}
        assert meta["sent"] == 4 and meta["skipped"] == 6 and meta["dead_letters"] == 0
        assert meta["sent_by_step"] == {"escalation_14": 4}
        assert meta["amount_due_reminded"] == {"USD": "170.00 USD"}
        assert meta["as_of"] == "2026-04-14T09:00:00+00:00" and meta["policy_version"] == 1
        again = job.execute_in_process(run_config=request.run_config, instance=instance)
        [second] = again.asset_materializations_for_node("payment_reminders")
        assert second.metadata["sent"].value == 0 and second.metadata["decided"].value == 0
    mails = sorted(settings.outbox_dir.glob("*.eml"))
    assert [m.name for m in mails] == [
        "reminder.1.escalation_14.account_manager@example.com.eml",
        "reminder.1.escalation_14.customer@example.com.eml",
        "reminder.2.escalation_14.account_manager@example.com.eml",
        "reminder.2.escalation_14.customer@example.com.eml",
    ]
    parsed = email.message_from_bytes(mails[1].read_bytes())
    assert (
        " ".join(parsed["Subject"].split()) == "Second notice: invoice INV-2026-000001 is 14 days overdue (120.00 USD)"
    )


def test_a_bad_as_of_fails_the_run_naming_it(settings, tmp_path):
    job = build_definitions(settings).resolve_job_def("send_payment_reminders_job")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            run_config={"ops": {"payment_reminders": {"config": {"as_of": "2026-04-14T09:00"}}}},
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success
    assert "as_of: needs a UTC offset" in str(result.all_events)
