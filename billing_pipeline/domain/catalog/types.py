"""The typed catalog: metrics, plans, charges and their parameters, and the limits they obey.

The limits are what the database can hold (``db/schema.py``; a unit test keeps the two in
step): codes fit a ``String(64)`` column, descriptions leave room for the pricing detail
in ``invoice_lines.description`` (``String(512)``), and every decimal stays below
``MAX_DECIMAL`` with at most ``MAX_DECIMAL_PLACES`` decimals, so exact prices print in
``invoice_lines.unit_price`` (``String(64)``) and amounts fit integer minor units.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal

from ..model import BillingInterval

#: usage_events.metric_code, subscriptions.plan_code, invoice_lines.charge_code: String(64).
MAX_CODE_LENGTH = 64
#: Names and descriptions; invoice_lines.description (512) also holds the pricing detail.
MAX_TEXT_LENGTH = 255
#: Every decimal of the catalog is below 10^12 (like event values, domain.quantity) ...
MAX_DECIMAL = Decimal(10) ** 12
#: ... with at most 12 decimals: the exact text stays well inside String(64).
MAX_DECIMAL_PLACES = 12
#: Size limits of a catalog document (a 17 MB, 200,000-metric file took 95 s and 1.2 GB).
MAX_CATALOG_BYTES = 2_000_000
MAX_METRICS = 10_000
MAX_PLANS = 10_000
MAX_CHARGES_PER_PLAN = 100
MAX_TIERS = 100

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


class Rounding(str, enum.Enum):
    """Stripe ``transform_quantity[round]``: after the division, round up or down."""

    UP = "up"
    DOWN = "down"


@dataclass(frozen=True)
class Metric:
    """A billable metric. ``keeps_event_values`` is derived by ``parse_catalog``: true when a
    percentage charge needs each event's value (free events, free amount, per-transaction
    minimum or maximum), so aggregation hands pricing the values in event order."""

    code: str
    name: str
    aggregation: Aggregation
    unique_property: str | None = None
    allow_negative: bool = False
    keeps_event_values: bool = False


@dataclass(frozen=True)
class Tier:
    """Units above the previous tier's ``up_to`` and up to this ``up_to`` (inclusive).

    With ``block_size`` (Kill Bill tiered blocks) ``unit_price`` is the price of one block
    of ``block_size`` units, and a started block is billed in full.
    """

    up_to: Decimal | None  # None: unbounded (last tier only)
    unit_price: Decimal
    flat_fee: Decimal = Decimal(0)
    block_size: Decimal | None = None


@dataclass(frozen=True)
class FlatParams:
    amount: Decimal


@dataclass(frozen=True)
class TransformQuantity:
    """Stripe ``transform_quantity``: bill ``quantity / divide_by`` rounded up or down."""

    divide_by: int
    round: Rounding


@dataclass(frozen=True)
class PerUnitParams:
    unit_price: Decimal
    transform_quantity: TransformQuantity | None = None


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
    """Lago's percentage charge; see ``domain.pricing`` for the exact rules.

    ``free_units`` is the older option (an amount free of the rate only, the fixed fee still
    charged on every event); Lago's ``free_units_per_total_aggregation`` also waives the
    fixed fee of the events it covers. A catalog uses one or the other.
    """

    rate: Decimal  # fraction: Decimal("0.025") is 2.5 %
    fixed_fee_per_event: Decimal = Decimal(0)  # Lago: fixed_amount
    free_units: Decimal = Decimal(0)
    free_units_per_events: int = 0
    free_units_per_total_aggregation: Decimal = Decimal(0)
    per_transaction_min_amount: Decimal | None = None
    per_transaction_max_amount: Decimal | None = None

    @property
    def needs_event_values(self) -> bool:
        """Whether pricing needs each event's value in order, not only the sum and count."""
        return bool(
            self.free_units_per_events
            or self.free_units_per_total_aggregation
            or self.per_transaction_min_amount is not None
            or self.per_transaction_max_amount is not None
        )


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
