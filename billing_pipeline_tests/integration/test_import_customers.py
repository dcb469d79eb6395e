"""import-customers on SQLite and a real PostgreSQL: all or nothing, every bad row named,
re-imports change nothing, and no path stores what PostgreSQL or SMTP cannot hold."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.exc import DataError

from billing_pipeline.cli import main
from billing_pipeline.db import reference
from billing_pipeline.db.customer_files import read_customer_file
from billing_pipeline.db.engine import get_engine
from billing_pipeline.db.schema import organizations, subscriptions
from billing_pipeline.domain.customers import CustomersInvalid
from billing_pipeline.domain.organizations import InvalidOrganization
from billing_pipeline_tests.builders import UTC, org, setup_database, store_unchecked_organizations

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).parents[2] / "billing_pipeline" / "examples"
HEADER = (
    "org_id,name,billing_email,status,currency,tax_rate,billing_interval,auto_pay,payment_terms_days,"
    "plan,starts_at,ends_at"
)
OK = "active,USD,0.20,monthly,false,30,starter,2026-01-01,"
#: (CSV row, line, field, what the message says): one kind of bad row each.
BAD_ROWS = [
    ("two,Two,a@x.com; b@y.com," + OK, "billing_email", "must be one address, got 'a@x.com; b@y.com'"),
    ('list,List,"a@x.com, b@y.com",' + OK, "billing_email", "must be one address, got 'a@x.com, b@y.com'"),
    ('crlf,Crlf,"a@x.com\r\nBcc: v@evil.test",' + OK, "billing_email", "must be one address"),
    ('disp,Disp,"Acme <a@acme.test>",' + OK, "billing_email", "must be one address"),
    ("cur,Cur,b@cur.test,active,XYZ,0.20,monthly,false,30,,,", "currency", "unknown currency 'XYZ'"),
    ("eur,Eur,b@eur.test,active,EUR,0.20,monthly,false,30,starter,2026-01-01,", "plan", "priced in USD"),
    ("nop,Nop,b@nop.test,active,USD,0.20,monthly,false,30,platinum,2026-01-01,", "plan", "unknown plan 'platinum'"),
    ("wk,Wk,b@wk.test,active,USD,0.20,weekly,false,30,starter,2026-01-01,", "plan", "billed monthly"),
    ("st,St,b@st.test,paused,USD,0.20,monthly,false,30,,,", "status", "active | suspended | closed"),
    ("tax,Tax,b@tax.test,active,USD,20,monthly,false,30,,,", "tax_rate", "between 0 and 1"),
    ("tx6,Tx6,b@tx6.test,active,USD,0.1234567,monthly,false,30,,,", "tax_rate", "at most 6 decimals"),
    ("trm,Trm,b@trm.test,active,USD,0.2,monthly,false,400,,,", "payment_terms_days", "from 0 to 365"),
    ("ap,Ap,b@ap.test,active,USD,0.2,monthly,maybe,30,,,", "auto_pay", "true or false"),
    ("dt,Dt,b@dt.test,active,USD,0.2,monthly,false,30,starter,2026-05-01,2026-04-01", "ends_at", "after starts_at"),
    ("nv,Nv,b@nv.test,active,USD,0.2,monthly,false,30,starter,2026-05-01T10:00:00,", "starts_at", "must be in UTC"),
    ("iso,Iso,b@iso.test,active,USD,0.2,monthly,false,30,starter,01/05/2026,", "starts_at", "ISO date"),
    ("good,Dup,b@dup.test," + OK, "org_id", "duplicate organization 'good' (first on line 2)"),
    ("bidi,Evil\u202eCorp,b@bidi.test," + OK, "name", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
    ("ctl,Nul\x07Bell,b@ctl.test," + OK, "name", "U+0007"),
    ("long," + "N" * 10_000 + ",b@long.test," + OK, "name", "at most 255 characters, got 10000"),
    ("cjk," + "株" * 200 + ",b@cjk.test," + OK, "name", "at most 500 bytes in UTF-8"),
    ("bad|id,Bad Id,b@id.test," + OK, "org_id", "must be 1-64 characters"),
    ("req,,b@req.test," + OK, "name", "is required"),
    ("short,Short,b@short.test,active", "", "expected 12 fields, got 4"),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'billing.db'}"
    else:
        url = request.getfixturevalue("billing_db_url")
    setup_database(url)
    return url


def counts(url: str) -> tuple[int, int]:
    with get_engine(url).connect() as conn:
        return tuple(conn.execute(select(func.count()).select_from(t)).scalar() for t in (organizations, subscriptions))


def do_import(url: str, path: Path, **kw):
    records, problems = read_customer_file(path)
    return reference.import_customers(get_engine(url), path.name, records, problems, **kw)


def test_every_kind_of_bad_row_is_named_and_nothing_is_written(url, tmp_path):
    lines, row_line = [HEADER, "good,Good Org,b@good.test," + OK], 3
    expected = []
    for row, field, message in BAD_ROWS:
        lines.append(row)
        expected.append((row_line, field, message))
        row_line += row.count("\n") + 1
    path = tmp_path / "customers.csv"
    path.write_text("\n".join(lines) + "\n", newline="")
    with pytest.raises(CustomersInvalid) as caught:
        do_import(url, path)
    found = [(p.line, p.path, p.message) for p in caught.value.problems]
    assert len(found) == len(BAD_ROWS) >= 15
    for (line, field, message), (got_line, got_field, got_message) in zip(expected, found, strict=True):
        assert (got_line, got_field) == (line, field) and message in got_message, (line, got_message)
    text = str(caught.value)
    assert "customers.csv:3: billing_email: must be one address, got 'a@x.com; b@y.com'" in text
    assert "customers.csv:4: billing_email: must be one address, got 'a@x.com, b@y.com'" in text
    assert "N" * 100 not in text  # a 10,000-character value is not echoed whole
    assert counts(url) == (0, 0)


def test_import_then_reimport_is_a_no_op_then_an_update(url, tmp_path):
    result = do_import(url, EXAMPLES / "customers.csv")
    assert (result.organizations["created"], result.subscriptions["created"]) == (6, 6)
    with get_engine(url).connect() as conn:
        stamps = dict(conn.execute(select(organizations.c.id, organizations.c.updated_at)).all())
    for example in ("customers.csv", "customers.yaml"):
        again = do_import(url, EXAMPLES / example)
        assert (again.organizations, again.subscriptions) == ({"unchanged": 6}, {"unchanged": 6})
    with get_engine(url).connect() as conn:
        assert dict(conn.execute(select(organizations.c.id, organizations.c.updated_at)).all()) == stamps
    assert counts(url) == (6, 6)

    # acme ends starter on 2026-06-01 and moves to a new starter term; the dry run writes nothing
    path = tmp_path / "change.jsonl"
    path.write_text(
        '{"org_id": "acme", "name": "Acme Analytics Inc", "billing_email": "billing@acme.test", "status": "active",'
        ' "currency": "USD", "tax_rate": 0.2, "billing_interval": "monthly", "auto_pay": true,'
        ' "payment_terms_days": 14, "subscriptions": [{"plan": "starter", "starts_at": "2026-01-01",'
        ' "ends_at": "2026-06-01"}, {"plan": "starter", "starts_at": "2026-06-01T00:00:00Z"}]}\n'
    )
    preview = do_import(url, path, dry_run=True)
    assert preview.organizations == {"updated": 1} and preview.subscriptions == {"updated": 1, "created": 1}
    assert (
        counts(url) == (6, 6)
        and reference.get_organizations(get_engine(url), ["acme"])["acme"].name == "Acme Analytics"
    )
    do_import(url, path)
    assert counts(url) == (6, 7) and do_import(url, path).subscriptions == {"unchanged": 2}
    jun = dt.datetime(2026, 6, 1, tzinfo=UTC)
    assert reference.plans_for_period(get_engine(url), ["acme"], jun, jun + dt.timedelta(days=30)) == {
        "acme": "starter"
    }


def test_yaml_problems_name_item_and_line(url, tmp_path):
    do_import(url, EXAMPLES / "customers.csv")
    path = tmp_path / "customers.yaml"
    path.write_text(
        "customers:\n"
        "  - {org_id: acme, name: Acme, billing_email: billing@acme.test, status: active, currency: USD,\n"
        "     tax_rate: 0.2, billing_interval: monthly, auto_pay: true, payment_terms_days: 14}\n"
        "  - org_id: globex\n"
        "    name: Globex GmbH\n"
        "    billing_email: ap@globex.test\n"
        "    status: active\n"
        "    currency: USD\n"
        '    tax_rate: "0.19"\n'
        "    billing_interval: monthly\n"
        "    auto_pay: no\n"
        "    payment_terms_days: 30\n"
        "    subscriptions: [{plan: starter, starts_at: 2026-03-01}]\n"
    )
    with pytest.raises(CustomersInvalid) as caught:
        do_import(url, path)
    text = str(caught.value).splitlines()
    assert text[0].startswith("customers.yaml:3: customers[0].tax_rate: must be a decimal string or integer")
    assert text[1].startswith(
        "customers.yaml:8: customers[1].currency: stored subscription growth_eur from 2026-01-01 (open-ended): "
        "plan 'growth_eur' is priced in EUR, the organization in USD"
    )
    assert text[2].startswith("customers.yaml:13: customers[1].subscriptions: starter from 2026-03-01")
    assert do_import(url, EXAMPLES / "customers.yaml").organizations == {"unchanged": 6}


def test_no_path_stores_what_the_database_or_smtp_cannot_hold(url):
    engine = get_engine(url)
    long_name = type(org("big"))(**{**org("big").__dict__, "name": "N" * 10_000})
    with pytest.raises(InvalidOrganization, match="name: must be at most 255 characters, got 10000"):
        reference.upsert_organizations(engine, [org("fine"), long_name])
    bidi = type(org("rlo"))(**{**org("rlo").__dict__, "name": "Invoice\u202efdp.exe"})
    with pytest.raises(InvalidOrganization, match="U\\+202E"):
        reference.upsert_organizations(engine, [bidi])
    assert counts(url) == (0, 0)  # all or nothing: "fine" was not written either
    if engine.dialect.name == "postgresql":  # what the rule protects: VARCHAR(255) refuses the row
        with pytest.raises(DataError, match="value too long"):
            store_unchecked_organizations(url, [long_name])
    reference.upsert_organizations(engine, [org("eur", currency="EUR")])
    with pytest.raises(ValueError, match="plan 'starter' is priced in USD, the organization in EUR"):
        reference.add_subscription(engine, "eur", "starter", dt.datetime(2026, 1, 1, tzinfo=UTC))
    assert counts(url) == (1, 0)


def test_the_command(url, tmp_path, monkeypatch):
    monkeypatch.setenv("BILLING_DATABASE_URL", url)
    monkeypatch.setenv("BILLING_HOME", str(tmp_path))
    runner = CliRunner()
    result = runner.invoke(main, ["import-customers", str(EXAMPLES / "customers.yaml"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "organizations: 6 created, 0 updated, 0 unchanged" in result.output and counts(url) == (0, 0)
    bad = tmp_path / "customers.csv"
    bad.write_text(HEADER + '\nx,X,"a@x.com, b@y.com",' + OK + "\n")
    result = runner.invoke(main, ["import-customers", str(bad)])
    assert result.exit_code == 1
    assert "customers.csv:2: billing_email: must be one address, got 'a@x.com, b@y.com'" in result.output
    assert "1 problem(s); nothing was written" in result.output
    result = runner.invoke(main, ["import-customers", str(tmp_path / "missing.csv")])
    assert result.exit_code == 1 and "missing.csv: cannot be read" in result.output
