"""Catalog versions in the database: a plan still subscribed is never dropped silently, and the
load-catalog command answers bad files with the file, the byte or the field."""

from __future__ import annotations

import copy
import datetime as dt
import time

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import select

from billing_pipeline.cli import main
from billing_pipeline.clock import utc_now
from billing_pipeline.db import reference
from billing_pipeline.db.engine import get_engine
from billing_pipeline.db.reference import CatalogVersionConflict, PlanStillSubscribed
from billing_pipeline.db.schema import subscriptions
from billing_pipeline_tests.builders import CATALOG_FILE, org, setup_database


@pytest.fixture
def engine(tmp_path):
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    setup_database(url)
    engine = get_engine(url)
    reference.upsert_organizations(engine, [org("acme"), org("globex"), org("old_customer", interval="weekly")])
    reference.add_subscription(engine, "acme", "starter", utc_now() - dt.timedelta(days=400))
    reference.add_subscription(
        engine, "globex", "starter", utc_now() - dt.timedelta(days=10), utc_now() + dt.timedelta(days=30)
    )
    # ended well before the previous month: its periods are billed, it does not hold the plan
    reference.add_subscription(
        engine, "old_customer", "weekly_usd", utc_now() - dt.timedelta(days=400), utc_now() - dt.timedelta(days=120)
    )
    return engine


def _next_version(drop: str, version: int = 3, rename_to: str | None = None) -> dict:
    document = copy.deepcopy(yaml.safe_load(CATALOG_FILE.read_text()))
    document["version"] = version
    plan = next(p for p in document["plans"] if p["code"] == drop)
    if rename_to:
        plan["code"] = rename_to
    else:
        document["plans"].remove(plan)
    return document


def _plans(engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(select(subscriptions.c.org_id, subscriptions.c.plan_code)).all())


def test_a_subscribed_plan_cannot_be_dropped(engine):
    with pytest.raises(PlanStillSubscribed) as excinfo:
        reference.save_catalog(engine, _next_version("starter"), "v3.yaml")
    assert str(excinfo.value) == (
        "plans: plan 'starter' is not in catalog version 3 but 2 organization(s) are subscribed to it "
        "(acme, globex); keep the plan, or move them to another plan of this version "
        "(load-catalog --replace starter=NEW_PLAN)"
    )
    assert reference.latest_catalog(engine).version == 2  # nothing stored


def test_a_plan_no_longer_subscribed_can_be_dropped(engine):
    catalog, created = reference.save_catalog(engine, _next_version("weekly_usd"), "v3.yaml")
    assert created and "weekly_usd" not in catalog.plans
    assert _plans(engine)["old_customer"] == "weekly_usd"  # history kept


def test_a_replacement_moves_the_subscriptions_with_the_new_version(engine):
    document = _next_version("starter", rename_to="starter_2027")
    catalog, created = reference.save_catalog(engine, document, "v3.yaml", replacements={"starter": "starter_2027"})
    assert created and reference.latest_catalog(engine).version == 3
    assert _plans(engine) == {"acme": "starter_2027", "globex": "starter_2027", "old_customer": "weekly_usd"}


@pytest.mark.parametrize(
    ("replacements", "message"),
    [
        ({"starter": "nope"}, "replace starter=nope: plan 'nope' is not in catalog version 3"),
        ({"growth_eur": "starter_2027"}, "replace growth_eur=starter_2027: plan 'growth_eur' is still in catalog"),
        (
            {"starter": "hosting_jpy"},
            "replace starter=hosting_jpy: 'starter' is billed monthly in USD, 'hosting_jpy' monthly in JPY; "
            "a replacement must match both",
        ),
    ],
)
def test_bad_replacements_are_refused_and_nothing_moves(engine, replacements, message):
    document = _next_version("starter", rename_to="starter_2027")
    with pytest.raises(CatalogVersionConflict) as excinfo:
        reference.save_catalog(engine, document, "v3.yaml", replacements=replacements)
    assert str(excinfo.value).startswith(message)
    assert reference.latest_catalog(engine).version == 2
    assert _plans(engine)["acme"] == "starter"


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("BILLING_HOME", str(tmp_path / "billing"))
    monkeypatch.delenv("BILLING_DATABASE_URL", raising=False)
    runner = CliRunner()

    def run(*args, code=0):
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    run("init-db")
    return run


def test_load_catalog_names_a_latin1_byte(run, tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("version: 3\nmetrics:\n  - {code: caf\u00e9, name: x, aggregation: count}\n".encode("latin-1"))
    out = run("load-catalog", str(path), code=1)
    assert f"{path}: not UTF-8: byte 0xe9 at offset 34 (line 3, column 15)" in out
    assert "Traceback" not in out


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["metrics"][0].update(code="m" * 100), "metrics[0].code: must be at most 64 characters"),
        (lambda d: d["plans"][0]["charges"][0].update(amount="1e200"), "plans[0].charges[0].amount: out of range"),
    ],
)
def test_load_catalog_refuses_what_the_database_cannot_hold(run, tmp_path, edit, message):
    document = yaml.safe_load(CATALOG_FILE.read_text())
    edit(document)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(document))
    out = run("load-catalog", str(path), code=1)
    assert f"{path}: {message}" in out and "Traceback" not in out


def test_load_catalog_refuses_a_file_over_2_mb(run, tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("version: 3\n" + "#" * 2_100_000 + "\n")
    out = run("load-catalog", str(path), code=1)
    assert "file is 2,100,012 bytes; a catalog may be at most 2,000,000 bytes" in out


def test_load_catalog_replace_option(run, tmp_path):
    document = yaml.safe_load(CATALOG_FILE.read_text())
    run("load-catalog", str(CATALOG_FILE))
    document["version"] = 3
    document["plans"] = [p for p in document["plans"] if p["code"] != "starter"]
    path = tmp_path / "v3.yaml"
    path.write_text(yaml.safe_dump(document))
    out = run("load-catalog", str(path), "--replace", "starter=weekly_usd", code=1)
    assert "'starter' is billed monthly in USD, 'weekly_usd' weekly in USD" in out
    assert "expected OLD=NEW" in run("load-catalog", str(path), "--replace", "starter", code=2)
    out = run("load-catalog", str(path), "--replace", "starter=payments_usd")
    assert "catalog version 3 loaded" in out and "subscriptions of plan starter moved to plan payments_usd" in out


def test_load_catalog_refuses_yaml_aliases_that_would_multiply_it_past_the_size_limit(run, tmp_path):
    """51 KB of YAML: one plan of 100 charges x 100 tiers, then `*p` 9,999 times (10^8 tiers, tens of GB)."""
    tiers = [f"{{up_to: {i + 1}, unit_price: '0.1'}}" for i in range(99)] + ["{up_to: null, unit_price: '1'}"]
    charge = "{{code: c{}, description: C, model: graduated, metric: api_calls, tiers: {}}}"
    charges = [charge.format(0, f"&t [{', '.join(tiers)}]")] + [charge.format(i, "*t") for i in range(1, 100)]
    plan = f"&p {{code: p, name: P, currency: USD, interval: monthly, charges: [{', '.join(charges)}]}}"
    path = tmp_path / "aliases.yaml"
    path.write_text(
        "version: 3\nmetrics:\n  - {code: api_calls, name: API calls, aggregation: count}\n"
        f"plans: [{', '.join([plan] + ['*p'] * 9_999)}]\n"
    )
    started = time.monotonic()
    out = run("load-catalog", str(path), code=1)
    assert f"{path}:4:" in out and "YAML aliases" in out and "Traceback" not in out, out
    assert time.monotonic() - started < 20
