"""Shared test data: an example catalog document, as loaded from YAML."""

import copy
import datetime as dt
from decimal import Decimal as D

from billing_pipeline.domain.model import BillingInterval, Organization, OrganizationStatus

EXAMPLE_CATALOG = {
    "version": 1,
    "metrics": [
        {"code": "api_calls", "name": "API calls", "aggregation": "count"},
        {"code": "storage_gb", "name": "Storage (GB)", "aggregation": "max"},
        {"code": "active_users", "name": "Active users", "aggregation": "unique_count", "unique_property": "user_id"},
        {"code": "payment_volume", "name": "Payment volume", "aggregation": "sum"},
        {"code": "instance_hours", "name": "Instance hours", "aggregation": "sum"},
        {"code": "seats", "name": "Seats", "aggregation": "latest"},
        {"code": "credits", "name": "Credits", "aggregation": "sum", "allow_negative": True},
    ],
    "plans": [
        {
            "code": "starter",
            "name": "Starter",
            "currency": "USD",
            "interval": "monthly",
            "minimum_spend": "50.00",
            "charges": [
                {"code": "platform", "description": "Platform fee", "model": "flat", "amount": "20.00"},
                {
                    "code": "api_calls",
                    "description": "API calls",
                    "model": "volume",
                    "metric": "api_calls",
                    "tiers": [
                        {"up_to": 10000, "unit_price": "0.0010", "flat_fee": 10},
                        {"up_to": 50000, "unit_price": "0.0008", "flat_fee": 10},
                        {"up_to": 100000, "unit_price": "0.0006", "flat_fee": 10},
                        {"up_to": None, "unit_price": "0.0004", "flat_fee": 10},
                    ],
                },
                {
                    "code": "users",
                    "description": "Active users",
                    "model": "package",
                    "metric": "active_users",
                    "package_size": 100,
                    "package_price": "5",
                    "free_units": 100,
                },
            ],
        },
        {
            "code": "pro_eu",
            "name": "Pro (EUR)",
            "currency": "EUR",
            "interval": "weekly",
            "charges": [
                {
                    "code": "storage",
                    "description": "Storage",
                    "model": "graduated",
                    "metric": "storage_gb",
                    "tiers": [
                        {"up_to": 5, "unit_price": "7"},
                        {"up_to": 10, "unit_price": "6.50"},
                        {"up_to": None, "unit_price": "6"},
                    ],
                },
                {
                    "code": "payments",
                    "description": "Payment fees",
                    "model": "percentage",
                    "metric": "payment_volume",
                    "rate": "0.025",
                    "fixed_fee_per_event": "0.10",
                    "free_units": "1000",
                },
                {
                    "code": "compute",
                    "description": "Compute",
                    "model": "hourly",
                    "metric": "instance_hours",
                    "monthly_price": "73.00",
                },
                {"code": "seats", "description": "Seats", "model": "per_unit", "metric": "seats", "unit_price": "12"},
            ],
        },
    ],
}


def example_catalog() -> dict:
    """A fresh deep copy, safe to mutate in a test."""
    return copy.deepcopy(EXAMPLE_CATALOG)


def organization(**overrides) -> Organization:
    fields = dict(
        id="org_1",
        name="Acme",
        billing_email="billing@acme.test",
        status=OrganizationStatus.ACTIVE,
        currency="USD",
        tax_rate=D("0.20"),
        billing_interval=BillingInterval.MONTHLY,
        auto_pay=False,
    )
    fields.update(overrides)
    return Organization(**fields)


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)
