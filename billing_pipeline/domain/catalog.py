"""The plan catalog: metrics, plans and their charges, parsed from a plain dict.

``parse_catalog(data)`` takes the already-loaded YAML (or JSON) document and returns a
validated, typed ``Catalog``; every problem raises ``CatalogError`` naming the exact
field path, e.g. ``plans[1].charges[0].tiers[2].up_to: must be greater than the
previous tier's up_to (10)``. Unknown keys are errors too (they are usually typos).

Accepted shape (YAML)::

    version: 1                      # int >= 1
    metrics:                        # list; codes unique
      - code: api_calls
        name: API calls
        aggregation: count          # count | sum | max | unique_count | latest
        unique_property: null       # required for unique_count: a key of event.properties
        allow_negative: false       # optional, default false
    plans:                          # list; codes unique
      - code: starter
        name: Starter
        currency: USD               # upper-case ISO 4217, see domain.money
        interval: monthly           # monthly | weekly
        minimum_spend: "50.00"      # optional; at most the currency's decimals
        charges:                    # list, in invoice order; codes unique in the plan
          - {code: platform, description: Platform fee, model: flat, amount: "20.00"}
          - {code: calls, description: API calls, model: per_unit, metric: api_calls,
             unit_price: "0.0010"}
          - code: storage
            description: Storage (GB)
            model: graduated        # or volume; same tier shape
            metric: storage_gb
            tiers:                  # ascending up_to (inclusive); the last one is null
              - {up_to: 5, unit_price: "7", flat_fee: "10"}   # flat_fee optional, default 0
              - {up_to: null, unit_price: "6.50"}
          - {code: seats, description: Seats, model: package, metric: seats,
             package_size: 100, package_price: "5", free_units: 100}   # free_units optional
          - {code: fees, description: Payment fees, model: percentage, metric: payment_volume,
             rate: "0.025", fixed_fee_per_event: "0.10", free_units: "1000"}  # last two optional
          - {code: compute, description: Compute, model: hourly, metric: instance_hours,
             monthly_price: "73.00", hours_per_month: 730}                   # default 730

Decimal values (prices, amounts, rates, up_to, sizes) are strings or integers. Floats are
refused: YAML turns ``0.1`` into a binary float, so quote it: ``"0.1"``. Every charge but
``flat`` needs a ``metric`` (and ``flat`` must not have one); a ``percentage`` charge's
metric must aggregate by ``sum``.
"""

from __future__ import annotations

import decimal
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from . import money
from .model import BillingInterval

_T = TypeVar("_T")
MAX_CODE_LENGTH = 255

#: Charge code used by the minimum-spend true-up line; no catalog charge may use it.
MINIMUM_SPEND_CODE = "minimum_spend"


class CatalogError(ValueError):
    """The catalog document is invalid; the message starts with the field path."""


class Aggregation(str, enum.Enum):
    """How a metric's events in a period become one quantity."""

    COUNT = "count"
    SUM = "sum"
    MAX = "max"
    UNIQUE_COUNT = "unique_count"
    LATEST = "latest"


class ChargeModel(str, enum.Enum):
    FLAT = "flat"
    PER_UNIT = "per_unit"
    GRADUATED = "graduated"
    VOLUME = "volume"
    PACKAGE = "package"
    PERCENTAGE = "percentage"
    HOURLY = "hourly"


@dataclass(frozen=True)
class Metric:
    code: str
    name: str
    aggregation: Aggregation
    unique_property: str | None = None
    allow_negative: bool = False


@dataclass(frozen=True)
class Tier:
    """Units above the previous tier's ``up_to`` and up to this ``up_to`` (inclusive)."""

    up_to: Decimal | None  # None: unbounded (last tier only)
    unit_price: Decimal
    flat_fee: Decimal = Decimal(0)


@dataclass(frozen=True)
class FlatParams:
    amount: Decimal


@dataclass(frozen=True)
class PerUnitParams:
    unit_price: Decimal


@dataclass(frozen=True)
class TieredParams:
    """Tiers of a ``graduated`` or ``volume`` charge."""

    tiers: tuple[Tier, ...]


@dataclass(frozen=True)
class PackageParams:
    package_size: Decimal
    package_price: Decimal
    free_units: Decimal = Decimal(0)


@dataclass(frozen=True)
class PercentageParams:
    rate: Decimal  # fraction: Decimal("0.025") is 2.5 %
    fixed_fee_per_event: Decimal = Decimal(0)
    free_units: Decimal = Decimal(0)  # amount of the summed value not subject to the rate


@dataclass(frozen=True)
class HourlyParams:
    monthly_price: Decimal
    hours_per_month: Decimal = Decimal(730)


ChargeParams = FlatParams | PerUnitParams | TieredParams | PackageParams | PercentageParams | HourlyParams

PARAMS_BY_MODEL: dict[ChargeModel, type] = {
    ChargeModel.FLAT: FlatParams,
    ChargeModel.PER_UNIT: PerUnitParams,
    ChargeModel.GRADUATED: TieredParams,
    ChargeModel.VOLUME: TieredParams,
    ChargeModel.PACKAGE: PackageParams,
    ChargeModel.PERCENTAGE: PercentageParams,
    ChargeModel.HOURLY: HourlyParams,
}


@dataclass(frozen=True)
class Charge:
    """One priced line of a plan; ``params`` is the dataclass matching ``model``."""

    code: str
    description: str
    model: ChargeModel
    metric_code: str | None
    params: ChargeParams

    def __post_init__(self) -> None:
        expected = PARAMS_BY_MODEL[self.model]
        if not isinstance(self.params, expected):
            raise TypeError(
                f"charge {self.code!r}: model {self.model.value} takes {expected.__name__}, "
                f"got {type(self.params).__name__}"
            )


@dataclass(frozen=True)
class Plan:
    code: str
    name: str
    currency: str
    interval: BillingInterval
    charges: tuple[Charge, ...]
    minimum_spend: Decimal | None = None


@dataclass(frozen=True)
class Catalog:
    version: int
    metrics: dict[str, Metric]
    plans: dict[str, Plan]


# --- parsing -------------------------------------------------------------------------


def _fail(path: str, message: str) -> CatalogError:
    return CatalogError(f"{path}: {message}")


def _mapping(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(path, f"must be a mapping, got {type(value).__name__}")
    return value


def _list(value: object, path: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise _fail(path, f"must be a list, got {type(value).__name__}")
    return list(value)


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _check_keys(node: Mapping[str, Any], path: str, required: set[str], optional: set[str]) -> None:
    for key in sorted(required - node.keys()):
        raise _fail(_join(path, key), "is required")
    for key in sorted(set(node) - required - optional, key=str):
        allowed = ", ".join(sorted(required | optional))
        raise _fail(_join(path, key), f"unknown field (allowed: {allowed})")


def _text(value: object, path: str, *, max_length: int | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, f"must be a non-empty string, got {value!r}")
    if max_length is not None and len(value) > max_length:
        raise _fail(path, f"must be at most {max_length} characters")
    return value


def _code(value: object, path: str) -> str:
    code = _text(value, path, max_length=MAX_CODE_LENGTH)
    if code != code.strip() or any(ch.isspace() for ch in code):
        raise _fail(path, f"must not contain whitespace, got {code!r}")
    return code


def _decimal(value: object, path: str, *, minimum: Decimal = Decimal(0), exclusive: bool = False) -> Decimal:
    """A finite decimal from a string or int, ``>= minimum`` (``>`` if ``exclusive``)."""
    if isinstance(value, float):
        raise _fail(path, f"must be a string or integer, got float {value!r} — quote decimal values")
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        raise _fail(path, f"must be a string or integer, got {type(value).__name__} {value!r}")
    try:
        number = money.to_decimal(value)
    except (ValueError, decimal.InvalidOperation):
        raise _fail(path, f"must be a finite decimal number, got {value!r}") from None
    if number < minimum or (exclusive and number == minimum):
        raise _fail(path, f"must be {'>' if exclusive else '>='} {minimum}, got {value!r}")
    return number


def _amount(value: object, path: str, currency: str) -> Decimal:
    """A non-negative amount with at most the currency's decimals (no silent rounding)."""
    number = _decimal(value, path)
    if money.quantize(number, currency) != number:
        raise _fail(
            path,
            f"{value!r} has more decimals than {currency} allows ({money.exponent(currency)})",
        )
    return number


def _enum(enum_type: type[_T], value: object, path: str) -> _T:
    try:
        return enum_type(value)  # type: ignore[call-arg]
    except ValueError:
        allowed = " | ".join(m.value for m in enum_type)  # type: ignore[attr-defined]
        raise _fail(path, f"must be one of {allowed}, got {value!r}") from None


def _unique(items: list[_T], code_of: Callable[[_T], str], path: str, what: str) -> dict[str, _T]:
    result: dict[str, _T] = {}
    for index, item in enumerate(items):
        code = code_of(item)
        if code in result:
            raise _fail(f"{path}[{index}].code", f"duplicate {what} code {code!r}")
        result[code] = item
    return result


def _parse_metric(node: object, path: str) -> Metric:
    node = _mapping(node, path)
    _check_keys(node, path, {"code", "name", "aggregation"}, {"unique_property", "allow_negative"})
    aggregation = _enum(Aggregation, node["aggregation"], f"{path}.aggregation")
    unique_property = node.get("unique_property")
    if aggregation is Aggregation.UNIQUE_COUNT:
        if unique_property is None:
            raise _fail(f"{path}.unique_property", "is required for aggregation unique_count")
        unique_property = _text(unique_property, f"{path}.unique_property")
    elif unique_property is not None:
        raise _fail(f"{path}.unique_property", "is only allowed with aggregation unique_count")
    allow_negative = node.get("allow_negative", False)
    if not isinstance(allow_negative, bool):
        raise _fail(f"{path}.allow_negative", f"must be true or false, got {allow_negative!r}")
    return Metric(
        code=_code(node["code"], f"{path}.code"),
        name=_text(node["name"], f"{path}.name"),
        aggregation=aggregation,
        unique_property=unique_property,
        allow_negative=allow_negative,
    )


def _parse_tiers(value: object, path: str) -> TieredParams:
    nodes = _list(value, path)
    if not nodes:
        raise _fail(path, "must list at least one tier")
    tiers: list[Tier] = []
    previous: Decimal | None = None
    for index, node in enumerate(nodes):
        tier_path = f"{path}[{index}]"
        node = _mapping(node, tier_path)
        _check_keys(node, tier_path, {"up_to", "unit_price"}, {"flat_fee"})
        is_last = index == len(nodes) - 1
        up_to: Decimal | None = None
        if node["up_to"] is None:
            if not is_last:
                raise _fail(f"{tier_path}.up_to", "only the last tier may be unbounded (null)")
        else:
            up_to = _decimal(node["up_to"], f"{tier_path}.up_to", exclusive=True)
            if previous is not None and up_to <= previous:
                raise _fail(
                    f"{tier_path}.up_to",
                    f"must be greater than the previous tier's up_to ({previous})",
                )
            if is_last:
                raise _fail(f"{tier_path}.up_to", "the last tier must be unbounded (up_to: null)")
            previous = up_to
        tiers.append(
            Tier(
                up_to=up_to,
                unit_price=_decimal(node["unit_price"], f"{tier_path}.unit_price"),
                flat_fee=_decimal(node.get("flat_fee", 0), f"{tier_path}.flat_fee"),
            )
        )
    return TieredParams(tuple(tiers))


def _parse_params(model: ChargeModel, node: Mapping[str, Any], path: str, currency: str) -> ChargeParams:
    if model is ChargeModel.FLAT:
        return FlatParams(_amount(node["amount"], f"{path}.amount", currency))
    if model is ChargeModel.PER_UNIT:
        return PerUnitParams(_decimal(node["unit_price"], f"{path}.unit_price"))
    if model in (ChargeModel.GRADUATED, ChargeModel.VOLUME):
        return _parse_tiers(node["tiers"], f"{path}.tiers")
    if model is ChargeModel.PACKAGE:
        return PackageParams(
            package_size=_decimal(node["package_size"], f"{path}.package_size", minimum=Decimal(1)),
            package_price=_decimal(node["package_price"], f"{path}.package_price"),
            free_units=_decimal(node.get("free_units", 0), f"{path}.free_units"),
        )
    if model is ChargeModel.PERCENTAGE:
        rate = _decimal(node["rate"], f"{path}.rate")
        if rate > 1:
            raise _fail(f"{path}.rate", f"must be a fraction between 0 and 1, got {node['rate']!r}")
        return PercentageParams(
            rate=rate,
            fixed_fee_per_event=_decimal(node.get("fixed_fee_per_event", 0), f"{path}.fixed_fee_per_event"),
            free_units=_decimal(node.get("free_units", 0), f"{path}.free_units"),
        )
    return HourlyParams(
        monthly_price=_decimal(node["monthly_price"], f"{path}.monthly_price"),
        hours_per_month=_decimal(node.get("hours_per_month", 730), f"{path}.hours_per_month", exclusive=True),
    )


_PARAM_KEYS: dict[ChargeModel, tuple[set[str], set[str]]] = {
    ChargeModel.FLAT: ({"amount"}, set()),
    ChargeModel.PER_UNIT: ({"unit_price"}, set()),
    ChargeModel.GRADUATED: ({"tiers"}, set()),
    ChargeModel.VOLUME: ({"tiers"}, set()),
    ChargeModel.PACKAGE: ({"package_size", "package_price"}, {"free_units"}),
    ChargeModel.PERCENTAGE: ({"rate"}, {"fixed_fee_per_event", "free_units"}),
    ChargeModel.HOURLY: ({"monthly_price"}, {"hours_per_month"}),
}


def _parse_charge(node: object, path: str, currency: str, metrics: Mapping[str, Metric]) -> Charge:
    node = _mapping(node, path)
    if "model" not in node:
        raise _fail(f"{path}.model", "is required")
    model = _enum(ChargeModel, node["model"], f"{path}.model")
    required, optional = _PARAM_KEYS[model]
    base = {"code", "description", "model"}
    if model is ChargeModel.FLAT:
        _check_keys(node, path, base | required, optional)
    else:
        _check_keys(node, path, base | required | {"metric"}, optional)
    code = _code(node["code"], f"{path}.code")
    if code == MINIMUM_SPEND_CODE:
        raise _fail(f"{path}.code", f"{code!r} is reserved for the minimum-spend true-up line")
    metric_code: str | None = None
    if model is not ChargeModel.FLAT:
        metric_code = _code(node["metric"], f"{path}.metric")
        if metric_code not in metrics:
            known = ", ".join(sorted(metrics)) or "none"
            raise _fail(f"{path}.metric", f"unknown metric {metric_code!r} (known: {known})")
        if model is ChargeModel.PERCENTAGE and metrics[metric_code].aggregation is not Aggregation.SUM:
            raise _fail(
                f"{path}.metric",
                f"a percentage charge needs a sum metric; {metric_code!r} aggregates by "
                f"{metrics[metric_code].aggregation.value}",
            )
    return Charge(
        code=code,
        description=_text(node["description"], f"{path}.description"),
        model=model,
        metric_code=metric_code,
        params=_parse_params(model, node, path, currency),
    )


def _parse_plan(node: object, path: str, metrics: Mapping[str, Metric]) -> Plan:
    node = _mapping(node, path)
    _check_keys(node, path, {"code", "name", "currency", "interval", "charges"}, {"minimum_spend"})
    currency = node["currency"]
    try:
        money.exponent(currency)
    except money.UnknownCurrency as exc:
        raise _fail(f"{path}.currency", str(exc)) from None
    charge_nodes = _list(node["charges"], f"{path}.charges")
    if not charge_nodes:
        raise _fail(f"{path}.charges", "must list at least one charge")
    charges = [
        _parse_charge(charge, f"{path}.charges[{index}]", currency, metrics)
        for index, charge in enumerate(charge_nodes)
    ]
    _unique(charges, lambda c: c.code, f"{path}.charges", "charge")
    minimum = node.get("minimum_spend")
    return Plan(
        code=_code(node["code"], f"{path}.code"),
        name=_text(node["name"], f"{path}.name"),
        currency=currency,
        interval=_enum(BillingInterval, node["interval"], f"{path}.interval"),
        charges=tuple(charges),
        minimum_spend=None if minimum is None else _amount(minimum, f"{path}.minimum_spend", currency),
    )


def parse_catalog(data: Mapping[str, Any]) -> Catalog:
    """Validate the loaded catalog document and return it typed.

    Raises ``CatalogError`` on the first problem, its message starting with the path of
    the offending field.
    """
    root = _mapping(data, "catalog")
    _check_keys(root, "", {"version", "metrics", "plans"}, set())
    version = root["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _fail("version", f"must be an integer >= 1, got {version!r}")
    metric_list = [
        _parse_metric(node, f"metrics[{index}]") for index, node in enumerate(_list(root["metrics"], "metrics"))
    ]
    metrics = _unique(metric_list, lambda m: m.code, "metrics", "metric")
    plan_list = [
        _parse_plan(node, f"plans[{index}]", metrics) for index, node in enumerate(_list(root["plans"], "plans"))
    ]
    plans = _unique(plan_list, lambda p: p.code, "plans", "plan")
    return Catalog(version=version, metrics=metrics, plans=plans)
