"""import-customers and the optional collections fields, on SQLite and PostgreSQL: given they are
stored, omitted they keep the stored value, ``none`` removes the account manager."""

from __future__ import annotations

import pytest

from billing_pipeline.db import reference
from billing_pipeline.db.engine import get_engine
from billing_pipeline_tests.builders import setup_database
from billing_pipeline_tests.integration.test_import_customers import do_import

pytestmark = pytest.mark.integration
HEADER = "org_id,name,billing_email,status,currency,tax_rate,billing_interval,auto_pay,payment_terms_days"
ROW = "acme,Acme,billing@acme.test,active,USD,0.20,monthly,false,30"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    url = (
        f"sqlite:///{tmp_path / 'billing.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("billing_db_url")
    )
    setup_database(url)
    return url


def stored(url):
    acme = reference.get_organizations(get_engine(url), ["acme"])["acme"]
    return (acme.dunning_excluded, acme.account_manager_email, acme.time_zone)


def test_optional_fields_are_stored_kept_when_omitted_and_cleared_with_none(database, tmp_path):
    url = database
    path = tmp_path / "customers.csv"
    path.write_text(f"{HEADER}\n{ROW}\n")
    do_import(url, path)
    assert stored(url) == (False, None, "UTC")

    path.write_text(
        f"{HEADER},dunning_excluded,account_manager_email,time_zone\n{ROW},true,am@seller.test,Asia/Tokyo\n"
    )
    assert do_import(url, path).organizations == {"updated": 1}
    assert stored(url) == (True, "am@seller.test", "Asia/Tokyo")

    path.write_text(f"{HEADER}\n{ROW}\n")  # an older file without the columns changes nothing
    assert do_import(url, path).organizations == {"unchanged": 1}
    assert stored(url) == (True, "am@seller.test", "Asia/Tokyo")

    path.write_text(f"{HEADER},account_manager_email,time_zone\n{ROW},none,\n")
    assert do_import(url, path).organizations == {"updated": 1}
    assert stored(url) == (True, None, "Asia/Tokyo")


def test_sms_phone_is_stored_kept_when_omitted_and_cleared_with_none(database, tmp_path):
    url, path = database, tmp_path / "customers.csv"
    path.write_text(f"{HEADER},sms_phone\n{ROW},+447911123456\n")
    assert do_import(url, path).organizations == {"created": 1}
    phone = lambda: reference.get_organizations(get_engine(url), ["acme"])["acme"].sms_phone  # noqa: E731
    assert phone() == "+447911123456"
    path.write_text(f"{HEADER}\n{ROW}\n")
    assert do_import(url, path).organizations == {"unchanged": 1} and phone() == "+447911123456"
    path.write_text(f"{HEADER},sms_phone\n{ROW},none\n")
    assert do_import(url, path).organizations == {"updated": 1} and phone() is None
