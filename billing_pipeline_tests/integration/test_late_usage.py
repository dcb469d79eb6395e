"""Late usage on SQLite and PostgreSQL: an event for a finalized month is billed once, on the next invoice.

Plan ``starter`` (USD, minimum spend 25.00): storage is graduated, 10 GB free, 0.25 up to 100 GB,
0.10 above. October bills a 100 GB peak (22.50); a 200 GB event for October that arrives after
October is finalized re-prices October's storage at 32.50: November carries one line of +10.00.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import threading
from decimal import Decimal

import pytest
import time_machine
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError

from billing_pipeline.clock import utc_now
from billing_pipeline.db import invoices as invoice_rows
from billing_pipeline.db import late_usage, late_usage_ledger, reference, usage
from billing_pipeline.db.engine import get_engine
from billing_pipeline.db.schema import invoices, late_usage_adjustments
from billing_pipeline.domain.periods import monthly_period
from billing_pipeline.rendering import Seller
from billing_pipeline.rendering.pdf import render_invoice_pdf
from billing_pipeline.services import invoicing
from billing_pipeline.status import pending_late_usage_lines
from billing_pipeline_tests.builders import add_events, org, setup_database, subscribe

pytestmark = pytest.mark.integration
SELLER = Seller("Example Metering Ltd", ("1 Main Street",), None, "billing@example.com", "Pay by bank transfer.")
OCT, NOV, DEC = monthly_period(2026, 10), monthly_period(2026, 11), monthly_period(2026, 12)


@pytest.fixture(params=["sqlite", "postgresql"])
def billing(request, tmp_path):
    url = (
        f"sqlite:///{tmp_path / 'billing.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("billing_db_url")
    )
    setup_database(url)
    engine = get_engine(url)
    reference.upsert_organizations(engine, [org("acme"), org("other")])
    for o in ("acme", "other"):
        subscribe(url, o, "starter", OCT.start)
    add_events(
        url,
        [
            ("acme", "oct-1", "storage_gb", "100", OCT.start + dt.timedelta(days=4)),
            ("other", "oct-2", "storage_gb", "50", OCT.start + dt.timedelta(days=4)),
        ],
    )
    return url, engine


def aggregate(engine, period) -> None:
    catalog = reference.latest_catalog(engine)
    usage.aggregate_hours(engine, period.start, period.end - usage.HOUR, catalog.metrics)


def bill(engine, period, *, finalize: bool = True) -> dict[str, invoicing.OrgResult]:
    aggregate(engine, period)
    drafted = invoicing.draft_batch(engine, period, ["acme", "other"], dry_run=False)
    assert not drafted.failed, drafted.failed
    if not finalize:
        return {r.org_id: r for r in drafted.results}
    done = invoicing.finalize_batch(
        engine, period, ["acme", "other"], prefix="INV", now=period.end + dt.timedelta(days=3), dry_run=False
    )
    assert not done.failed, done.failed
    return {r.org_id: r for r in done.results}


def invoice_id(engine, org_id, period) -> int:
    return invoice_rows.get_invoice_states(engine, period.interval, period.key, [org_id])[org_id][0]


def invoice_of(engine, org_id, period):
    found = invoice_id(engine, org_id, period)
    return invoice_rows.load_invoices(engine, [found])[found].invoice


def october_billed_then_late(url, engine, gb: str = "200", *, reaggregate: bool = True) -> None:
    """October finalized, then an event of ``gb`` GB for 21 October arrives (and is re-aggregated)."""
    bill(engine, OCT)
    add_events(url, [("acme", "oct-late", "storage_gb", gb, OCT.start + dt.timedelta(days=20))])
    if reaggregate:
        aggregate(engine, OCT)


def ledger_rows(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(late_usage_adjustments)).scalar_one()


def adjustment_lines(invoice):
    return [line for line in invoice.lines if line.description.startswith("Adjustment for")]


def test_an_event_after_finalization_is_billed_once_on_the_next_invoice(billing):
    url, engine = billing
    october = bill(engine, OCT)["acme"]
    before = invoice_of(engine, "acme", OCT)
    assert before.total == Decimal("39.00")  # 10.00 platform + 22.50 storage = 32.50, + 20 % tax
    assert late_usage_ledger.pending_late_usage(engine) == []

    add_events(url, [("acme", "oct-late", "storage_gb", "200", OCT.start + dt.timedelta(days=20))])
    [waiting] = late_usage_ledger.pending_late_usage(engine)  # its hour is not re-aggregated yet
    assert (waiting.org_id, waiting.state) == (
        "acme",
        "blocked: late events in hours of October 2026 not re-aggregated yet",
    )
    aggregate(engine, OCT)
    [pending] = late_usage_ledger.pending_late_usage(engine)
    assert (pending.org_id, pending.source_number, pending.charge_code) == ("acme", october.number, "storage")
    assert (pending.usage_delta, pending.amount, pending.state) == (100, Decimal("10.00"), "not on an invoice yet")
    status = pending_late_usage_lines(engine)
    assert status[1:] == [
        "Late-usage adjustments pending: 1",
        f"  acme             October 2026         {october.number}  storage              +100      10.00 USD  "
        "not on an invoice yet",
    ]

    add_events(url, [("acme", "nov-1", "storage_gb", "5", NOV.start + dt.timedelta(days=2))])
    for _ in range(3):  # drafted again and again inside the grace window: still one line, one ledger row
        bill(engine, NOV, finalize=False)
        november = invoice_of(engine, "acme", NOV)
        [line] = adjustment_lines(november)
        assert line.description == f"Adjustment for October 2026 ({october.number}): Storage +100 (late usage)"
        assert (line.charge_code, line.quantity, line.amount) == ("storage", 100, Decimal("10.00"))
        assert ledger_rows(engine) == 1
    # November alone: 10.00 platform + 0 storage (5 GB free) + 15.00 true-up = 25.00; + 10.00 late; + 20 %
    assert (november.subtotal, november.total) == (Decimal("35.00"), Decimal("42.00"))
    [on_draft] = late_usage_ledger.pending_late_usage(engine)
    assert on_draft.state == "on the draft of 2026-11-01"

    with time_machine.travel(utc_now() + 2 * late_usage.MARGIN, tick=True):  # November finalized later on
        bill(engine, NOV)
        october_id = invoice_id(engine, "acme", OCT)
        assert october_id not in late_usage.candidate_invoices(engine)  # settled: November read it and is final
    assert late_usage_ledger.pending_late_usage(engine) == []
    assert pending_late_usage_lines(engine)[1:] == ["Late-usage adjustments pending: 0"]
    assert invoice_of(engine, "acme", OCT) == before  # the finalized invoice is unchanged
    assert len(adjustment_lines(invoice_of(engine, "acme", NOV))) == 1

    assert_printed(invoice_of(engine, "acme", NOV))

    bill(engine, DEC, finalize=False)  # the next month does not bill it again
    assert adjustment_lines(invoice_of(engine, "acme", DEC)) == [] and ledger_rows(engine) == 1
    assert adjustment_lines(invoice_of(engine, "other", NOV)) == []


def assert_printed(invoice) -> None:
    """The PDF prints the adjustment line like any other, and the stored totals."""
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) not installed")
    pdf = render_invoice_pdf(invoice, org("acme"), SELLER)
    text = subprocess.run(["pdftotext", "-layout", "-", "-"], input=pdf, capture_output=True, check=True).stdout
    flat = " ".join(text.decode().split())
    assert "Adjustment for October 2026" in flat and "(late usage)" in flat
    assert "10.00 USD" in flat and "35.00 USD" in flat and "42.00 USD" in flat


def test_a_second_late_event_is_billed_on_the_invoice_after(billing):
    url, engine = billing
    october_billed_then_late(url, engine)
    bill(engine, NOV)
    assert len(adjustment_lines(invoice_of(engine, "acme", NOV))) == 1
    add_events(url, [("acme", "oct-later", "storage_gb", "300", OCT.start + dt.timedelta(days=21))])
    aggregate(engine, OCT)
    bill(engine, DEC, finalize=False)
    [line] = adjustment_lines(invoice_of(engine, "acme", DEC))
    assert (line.quantity, line.amount) == (100, Decimal("10.00"))  # 42.50 for 300 GB, 32.50 billed so far
    assert ledger_rows(engine) == 2


def test_late_usage_not_re_aggregated_waits_for_a_later_invoice(billing):
    url, engine = billing
    october_billed_then_late(url, engine, reaggregate=False)
    bill(engine, NOV)  # October's hour not re-aggregated yet: November goes without it
    assert adjustment_lines(invoice_of(engine, "acme", NOV)) == []
    aggregate(engine, OCT)
    bill(engine, DEC, finalize=False)
    [line] = adjustment_lines(invoice_of(engine, "acme", DEC))
    assert line.amount == Decimal("10.00") and ledger_rows(engine) == 1


def test_late_usage_under_the_minimum_adds_no_line(billing):
    url, engine = billing
    bill(engine, OCT)  # other: 10.00 + 10.00 storage (50 GB) + 5.00 true-up = 25.00
    add_events(url, [("other", "oct-late", "storage_gb", "60", OCT.start + dt.timedelta(days=20))])
    aggregate(engine, OCT)
    pending = {(p.org_id, p.charge_code, p.amount) for p in late_usage_ledger.pending_late_usage(engine)}
    assert pending == {("other", "storage", Decimal("2.50")), ("other", "minimum_spend", Decimal("-2.50"))}
    bill(engine, NOV, finalize=False)
    assert adjustment_lines(invoice_of(engine, "other", NOV)) == []  # +2.50 storage - 2.50 true-up
    assert ledger_rows(engine) == 2  # both recorded, no amount: nothing pending
    with engine.connect() as conn:
        assert {r.line_number for r in conn.execute(select(late_usage_adjustments))} == {None}
    with time_machine.travel(utc_now() + 2 * late_usage.MARGIN, tick=True):  # November finalized later on
        bill(engine, NOV)
        october_id = invoice_id(engine, "acme", OCT)
        assert october_id not in late_usage.candidate_invoices(engine)  # settled: November read it and is final
    assert late_usage_ledger.pending_late_usage(engine) == []


def test_a_dry_run_shows_the_adjustment_and_writes_nothing(billing):
    url, engine = billing
    october_billed_then_late(url, engine)
    aggregate(engine, NOV)
    batch = invoicing.draft_batch(engine, NOV, ["acme"], dry_run=True)
    [result] = batch.results
    assert result.message == "1 late-usage adjustment line(s)"
    assert result.total == Decimal("42.00") and ledger_rows(engine) == 0


def test_two_drafts_at_once_never_both_carry_it(billing):
    """November's and December's drafts, priced while neither is stored, saved at the same time:
    the second waits for the first's lock and finds the late usage billed."""
    url, engine = billing
    october_billed_then_late(url, engine)
    aggregate(engine, NOV)
    drafts = {p.key: invoicing.compute_drafts(engine, p, ["acme"])[2]["acme"] for p in (NOV, DEC)}
    assert all(len(d.late_sources) == 1 for d in drafts.values())
    first_saved, release = threading.Event(), threading.Event()
    errors: list[Exception] = []

    def save(key: str, hold: bool) -> None:
        try:
            with engine.begin() as conn:
                draft = drafts[key]
                late_usage_ledger.save_draft_with_adjustments(
                    conn, draft.invoice, draft.late_sources, plan_code=draft.plan_code, catalog_version=2
                )
                if hold:
                    first_saved.set()
                    release.wait(10)
        except OperationalError as exc:  # SQLite may refuse the second writer instead of waiting
            errors.append(exc)

    november = threading.Thread(target=save, args=(NOV.key, True))
    november.start()
    assert first_saved.wait(10)
    december = threading.Thread(target=save, args=(DEC.key, False))
    december.start()
    december.join(1.0)
    assert december.is_alive()  # waiting for November's transaction
    release.set()
    november.join(10)
    december.join(30)
    assert len(adjustment_lines(invoice_of(engine, "acme", NOV))) == 1
    if not errors:
        assert adjustment_lines(invoice_of(engine, "acme", DEC)) == []
    assert ledger_rows(engine) == 1


def test_a_draft_keeps_its_adjustment_when_a_later_invoice_settles_the_month(billing):
    """November's draft carries October's late usage; December is drafted and finalized first
    (its read of October finds it billed on November); November, drafted again, keeps its line."""
    url, engine = billing
    october_billed_then_late(url, engine)
    bill(engine, NOV, finalize=False)
    with time_machine.travel(utc_now() + 2 * late_usage.MARGIN, tick=True):
        bill(engine, DEC)
        assert adjustment_lines(invoice_of(engine, "acme", DEC)) == []
        october_id = invoice_id(engine, "acme", OCT)
        assert october_id not in late_usage.candidate_invoices(engine)
        bill(engine, NOV, finalize=False)
        [line] = adjustment_lines(invoice_of(engine, "acme", NOV))
        assert line.amount == Decimal("10.00") and ledger_rows(engine) == 1
        bill(engine, NOV)
    assert late_usage_ledger.pending_late_usage(engine) == []


def test_a_voided_invoice_gives_its_late_usage_back_and_a_voided_month_owes_none(billing):
    url, engine = billing
    october_billed_then_late(url, engine)
    bill(engine, NOV)
    november_id = invoice_id(engine, "acme", NOV)
    with engine.begin() as conn:  # November voided: October's late usage is owed again
        conn.execute(update(invoices).where(invoices.c.id == november_id).values(status="void"))
    assert [(p.charge_code, p.amount) for p in late_usage_ledger.pending_late_usage(engine)] == [
        ("storage", Decimal("10.00"))
    ]
    bill(engine, DEC, finalize=False)
    [line] = adjustment_lines(invoice_of(engine, "acme", DEC))
    assert line.amount == Decimal("10.00")
    october_id = invoice_id(engine, "acme", OCT)
    with engine.begin() as conn:  # October voided: nothing of it is owed any more
        conn.execute(update(invoices).where(invoices.c.id == october_id).values(status="void"))
    bill(engine, DEC, finalize=False)
    assert adjustment_lines(invoice_of(engine, "acme", DEC)) == []
    assert late_usage_ledger.pending_late_usage(engine) == []
