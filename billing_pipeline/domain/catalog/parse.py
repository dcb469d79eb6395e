"""``parse_catalog``: the loaded catalog document to a typed, validated ``Catalog``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from .. import money
from ..model import BillingInterval
from . import fields as f
from .types import (
    MAX_CHARGES_PER_PLAN,
    MAX_METRICS,
    MAX_PLANS,
    MAX_TIERS,
    MINIMUM_SPEND_CODE,
    Aggregation,
    Catalog,
    Charge,
    ChargeModel,
    ChargeParams,
    FlatParams,
    HourlyParams,
    Metric,
    PackageParams,
    PercentageParams,
    PerUnitParams,
    Plan,
    Rounding,
    Tier,
    TieredParams,
    TransformQuantity,
)

_PARAM_KEYS: dict[ChargeModel, tuple[set[str], set[str]]] = {
    ChargeModel.FLAT: ({"amount"}, set()),
    ChargeModel.PER_UNIT: ({"unit_price"}, {"transform_quantity"}),
    ChargeModel.GRADUATED: ({"tiers"}, set()),
    ChargeModel.VOLUME: ({"tiers"}, set()),
    ChargeModel.PACKAGE: ({"package_size", "package_price"}, {"free_units"}),
    ChargeModel.PERCENTAGE: (
        {"rate"},
        {
            "fixed_fee_per_event",
            "free_units",
            "free_units_per_events",
            "free_units_per_total_aggregation",
            "per_transaction_min_amount",
            "per_transaction_max_amount",
        },
    ),
    ChargeModel.HOURLY: ({"monthly_price"}, {"hours_per_month"}),
}


def _parse_metric(node: object, path: str) -> Metric:
    node = f.mapping(node, path)
    f.check_keys(node, path, {"code", "name", "aggregation"}, {"unique_property", "allow_negative"})
    aggregation = f.choice(Aggregation, node["aggregation"], f"{path}.aggregation")
    unique_property = node.get("unique_property")
    if aggregation is Aggregation.UNIQUE_COUNT:
        if unique_property is None:
            raise f.fail(f"{path}.unique_property", "is required for aggregation unique_count")
        unique_property = f.text(unique_property, f"{path}.unique_property")
    elif unique_property is not None:
        raise f.fail(f"{path}.unique_property", "is only allowed with aggregation unique_count")
    allow_negative = node.get("allow_negative", False)
    if not isinstance(allow_negative, bool):
        raise f.fail(f"{path}.allow_negative", f"must be true or false, got {allow_negative!r}")
    return Metric(
        code=f.code(node["code"], f"{path}.code"),
        name=f.text(node["name"], f"{path}.name"),
        aggregation=aggregation,
        unique_property=unique_property,
        allow_negative=allow_negative,
    )


def _up_to(node: Mapping[str, Any], path: str, previous: Decimal | None, is_last: bool) -> Decimal | None:
    if node["up_to"] is None:
        if not is_last:
            raise f.fail(f"{path}.up_to", "only the last tier may be unbounded (null)")
        return None
    up_to = f.number(node["up_to"], f"{path}.up_to", exclusive=True)
    if previous is not None and up_to <= previous:
        raise f.fail(f"{path}.up_to", f"must be greater than the previous tier's up_to ({previous})")
    if is_last:
        raise f.fail(f"{path}.up_to", "the last tier must be unbounded (up_to: null)")
    return up_to


def _block_size(node: Mapping[str, Any], path: str, lower: Decimal, up_to: Decimal | None) -> Decimal | None:
    if node.get("block_size") is None:
        return None
    size = f.number(node["block_size"], f"{path}.block_size", exclusive=True)
    if up_to is not None and (up_to - lower) % size:
        raise f.fail(
            f"{path}.block_size",
            f"the tier holds {up_to - lower} units, not a whole number of blocks of {size} "
            "(a started block is billed in full, so a tier ends on a block boundary)",
        )
    return size


def _parse_tiers(value: object, path: str) -> TieredParams:
    nodes = f.items(value, path, MAX_TIERS)
    if not nodes:
        raise f.fail(path, "must list at least one tier")
    tiers: list[Tier] = []
    previous: Decimal | None = None
    for index, node in enumerate(nodes):
        tier_path = f"{path}[{index}]"
        node = f.mapping(node, tier_path)
        f.check_keys(node, tier_path, {"up_to", "unit_price"}, {"flat_fee", "block_size"})
        up_to = _up_to(node, tier_path, previous, index == len(nodes) - 1)
        tiers.append(
            Tier(
                up_to=up_to,
                unit_price=f.number(node["unit_price"], f"{tier_path}.unit_price"),
                flat_fee=f.number(node.get("flat_fee", 0), f"{tier_path}.flat_fee"),
                block_size=_block_size(node, tier_path, previous or Decimal(0), up_to),
            )
        )
        previous = up_to
    return TieredParams(tuple(tiers))


def _transform(value: object, path: str) -> TransformQuantity | None:
    if value is None:
        return None
    node = f.mapping(value, path)
    f.check_keys(node, path, {"divide_by", "round"}, set())
    return TransformQuantity(
        divide_by=f.integer(node["divide_by"], f"{path}.divide_by", minimum=1),
        round=f.choice(Rounding, node["round"], f"{path}.round"),
    )


def _optional_amount(node: Mapping[str, Any], key: str, path: str, currency: str) -> Decimal | None:
    return None if node.get(key) is None else f.amount(node[key], f"{path}.{key}", currency)


def _percentage(node: Mapping[str, Any], path: str, currency: str) -> PercentageParams:
    rate = f.number(node["rate"], f"{path}.rate")
    if rate > 1:
        raise f.fail(f"{path}.rate", f"must be a fraction between 0 and 1, got {node['rate']!r}")
    if "free_units" in node and "free_units_per_total_aggregation" in node:
        raise f.fail(
            f"{path}.free_units_per_total_aggregation",
            "cannot be combined with free_units (the older option, which keeps the fixed fee); use one",
        )
    minimum = _optional_amount(node, "per_transaction_min_amount", path, currency)
    maximum = _optional_amount(node, "per_transaction_max_amount", path, currency)
    if minimum is not None and maximum is not None and maximum < minimum:
        raise f.fail(f"{path}.per_transaction_max_amount", f"must be >= per_transaction_min_amount ({minimum})")
    return PercentageParams(
        rate=rate,
        fixed_fee_per_event=f.number(node.get("fixed_fee_per_event", 0), f"{path}.fixed_fee_per_event"),
        free_units=f.number(node.get("free_units", 0), f"{path}.free_units"),
        free_units_per_events=f.integer(
            node.get("free_units_per_events", 0), f"{path}.free_units_per_events", minimum=0
        ),
        free_units_per_total_aggregation=f.number(
            node.get("free_units_per_total_aggregation", 0), f"{path}.free_units_per_total_aggregation"
        ),
        per_transaction_min_amount=minimum,
        per_transaction_max_amount=maximum,
    )


def _parse_params(model: ChargeModel, node: Mapping[str, Any], path: str, currency: str) -> ChargeParams:
    if model is ChargeModel.FLAT:
        return FlatParams(f.amount(node["amount"], f"{path}.amount", currency))
    if model is ChargeModel.PER_UNIT:
        return PerUnitParams(
            f.number(node["unit_price"], f"{path}.unit_price"),
            _transform(node.get("transform_quantity"), f"{path}.transform_quantity"),
        )
    if model in (ChargeModel.GRADUATED, ChargeModel.VOLUME):
        return _parse_tiers(node["tiers"], f"{path}.tiers")
    if model is ChargeModel.PACKAGE:
        return PackageParams(
            package_size=f.number(node["package_size"], f"{path}.package_size", minimum=Decimal(1)),
            package_price=f.number(node["package_price"], f"{path}.package_price"),
            free_units=f.number(node.get("free_units", 0), f"{path}.free_units"),
        )
    if model is ChargeModel.PERCENTAGE:
        return _percentage(node, path, currency)
    return HourlyParams(
        monthly_price=f.number(node["monthly_price"], f"{path}.monthly_price"),
        hours_per_month=f.number(node.get("hours_per_month", 730), f"{path}.hours_per_month", exclusive=True),
    )


def _metric_of(node: Mapping[str, Any], path: str, model: ChargeModel, metrics: Mapping[str, Metric]) -> str:
    metric_code = f.code(node["metric"], f"{path}.metric")
    if metric_code not in metrics:
        known = ", ".join(sorted(metrics)[:20]) or "none"
        raise f.fail(f"{path}.metric", f"unknown metric {metric_code!r} (known: {known})")
    aggregation = metrics[metric_code].aggregation
    if model is ChargeModel.PERCENTAGE and aggregation is not Aggregation.SUM:
        raise f.fail(
            f"{path}.metric",
            f"a percentage charge needs a sum metric; {metric_code!r} aggregates by {aggregation.value}",
        )
    return metric_code


def _parse_charge(node: object, path: str, currency: str, metrics: Mapping[str, Metric]) -> Charge:
    node = f.mapping(node, path)
    if "model" not in node:
        raise f.fail(f"{path}.model", "is required")
    model = f.choice(ChargeModel, node["model"], f"{path}.model")
    required, optional = _PARAM_KEYS[model]
    base = {"code", "description", "model"} | ({"metric"} if model is not ChargeModel.FLAT else set())
    f.check_keys(node, path, base | required, optional)
    code = f.code(node["code"], f"{path}.code")
    if code == MINIMUM_SPEND_CODE:
        raise f.fail(f"{path}.code", f"{code!r} is reserved for the minimum-spend true-up line")
    return Charge(
        code=code,
        description=f.text(node["description"], f"{path}.description"),
        model=model,
        metric_code=None if model is ChargeModel.FLAT else _metric_of(node, path, model, metrics),
        params=_parse_params(model, node, path, currency),
    )


def _parse_plan(node: object, path: str, metrics: Mapping[str, Metric]) -> Plan:
    node = f.mapping(node, path)
    f.check_keys(node, path, {"code", "name", "currency", "interval", "charges"}, {"minimum_spend"})
    currency = node["currency"]
    try:
        money.exponent(currency)
    except money.UnknownCurrency as exc:
        raise f.fail(f"{path}.currency", str(exc)) from None
    charge_nodes = f.items(node["charges"], f"{path}.charges", MAX_CHARGES_PER_PLAN)
    if not charge_nodes:
        raise f.fail(f"{path}.charges", "must list at least one charge")
    charges = [
        _parse_charge(charge, f"{path}.charges[{index}]", currency, metrics)
        for index, charge in enumerate(charge_nodes)
    ]
    f.unique(charges, lambda c: c.code, f"{path}.charges", "charge")
    minimum = node.get("minimum_spend")
    return Plan(
        code=f.code(node["code"], f"{path}.code"),
        name=f.text(node["name"], f"{path}.name"),
        currency=currency,
        interval=f.choice(BillingInterval, node["interval"], f"{path}.interval"),
        charges=tuple(charges),
        minimum_spend=None if minimum is None else f.amount(minimum, f"{path}.minimum_spend", currency),
    )


def _with_event_values(metrics: dict[str, Metric], plans: Mapping[str, Plan]) -> dict[str, Metric]:
    """Mark the metrics whose percentage charges need each event's value."""
    needed = {
        c.metric_code
        for plan in plans.values()
        for c in plan.charges
        if isinstance(c.params, PercentageParams) and c.params.needs_event_values
    }
    return {code: dataclasses.replace(m, keeps_event_values=code in needed) for code, m in metrics.items()}


def parse_catalog(data: Mapping[str, Any]) -> Catalog:
    """Validate the loaded catalog document and return it typed.

    Raises ``CatalogError`` on the first problem, its message starting with the path of
    the offending field.
    """
    root = f.mapping(data, "catalog")
    f.check_keys(root, "", {"version", "metrics", "plans"}, set())
    version = root["version"]
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version < 2**31:
        raise f.fail("version", f"must be an integer >= 1, got {version!r}")
    metric_nodes = f.items(root["metrics"], "metrics", MAX_METRICS)
    metric_list = [_parse_metric(node, f"metrics[{index}]") for index, node in enumerate(metric_nodes)]
    metrics = f.unique(metric_list, lambda m: m.code, "metrics", "metric")
    plan_nodes = f.items(root["plans"], "plans", MAX_PLANS)
    plan_list = [_parse_plan(node, f"plans[{index}]", metrics) for index, node in enumerate(plan_nodes)]
    plans = f.unique(plan_list, lambda p: p.code, "plans", "plan")
    return Catalog(version=version, metrics=_with_event_values(metrics, plans), plans=plans)
