"""The plan catalog: metrics, plans and their charges, parsed from a plain dict.

``parse_catalog(data)`` takes the already-loaded YAML (or JSON) document and returns a
validated, typed ``Catalog``; every problem raises ``CatalogError`` naming the exact
field path, e.g. ``plans[1].charges[0].tiers[2].up_to: must be greater than the
previous tier's up_to (10)``. Unknown keys are errors too (they are usually typos).
``decode_catalog(bytes, source)`` checks the file first: at most 2 MB, UTF-8 (a bad byte
is named by offset, line and column).

Accepted shape (YAML)::

    version: 1                      # int >= 1
    metrics:                        # list (at most 10,000); codes unique
      - code: api_calls             # codes: at most 64 characters, no whitespace
        name: API calls             # names, descriptions: at most 255, single line, no bidi
        aggregation: count          # count | sum | max | unique_count | latest
        unique_property: null       # required for unique_count: a key of event.properties
        allow_negative: false       # optional, default false
    plans:                          # list (at most 10,000); codes unique
      - code: starter
        name: Starter
        currency: USD               # upper-case ISO 4217, see domain.money
        interval: monthly           # monthly | weekly
        minimum_spend: "50.00"      # optional; at most the currency's decimals
        charges:                    # list (at most 100), in invoice order; codes unique in the plan
          - {code: platform, description: Platform fee, model: flat, amount: "20.00"}
          - {code: calls, description: API calls, model: per_unit, metric: api_calls,
             unit_price: "0.0010"}
          - {code: rental, description: Car rental (hours), model: per_unit, metric: minutes,
             unit_price: "10", transform_quantity: {divide_by: 60, round: up}}  # Stripe
          - code: storage
            description: Storage (GB)
            model: graduated        # or volume; same tier shape (at most 100 tiers)
            metric: storage_gb
            tiers:                  # ascending up_to (inclusive); the last one is null
              - {up_to: 5, unit_price: "7", flat_fee: "10"}   # flat_fee optional, default 0
              - {up_to: null, unit_price: "6.50"}
          - code: minutes           # Kill Bill tiered blocks: unit_price is per block
            description: Call minutes
            model: graduated        # graduated = ALL_TIERS, volume = TOP_TIER
            metric: call_minutes
            tiers:
              - {up_to: 1000, unit_price: "1.00", block_size: 10}   # 100 blocks of 10
              - {up_to: null, unit_price: "0.50", block_size: 10}
          - {code: seats, description: Seats, model: package, metric: seats,
             package_size: 100, package_price: "5", free_units: 100}   # free_units optional
          - code: fees              # Lago percentage; every option but rate is optional
            description: Payment fees
            model: percentage
            metric: payment_volume  # a sum metric
            rate: "0.012"           # fraction: 1.2 %
            fixed_fee_per_event: "0.10"            # Lago fixed_amount
            free_units_per_events: 3               # the first 3 events carry no fee
            free_units_per_total_aggregation: "500"  # the first 500 carry no fee either
            per_transaction_min_amount: "1.00"     # each charged event costs 1.00 to 5.00
            per_transaction_max_amount: "5.00"
          - {code: compute, description: Compute, model: hourly, metric: instance_hours,
             monthly_price: "73.00", hours_per_month: 730}                   # default 730

Decimal values (prices, amounts, rates, up_to, sizes) are strings or integers below 10^12
with at most 12 decimals. Floats are refused: YAML turns ``0.1`` into a binary float, so
quote it: ``"0.1"``. Every charge but ``flat`` needs a ``metric`` (and ``flat`` must not
have one); a ``percentage`` charge's metric must aggregate by ``sum``. A tier with
``block_size`` ends on a block boundary. ``free_units`` on a percentage charge is the
older option (free of the rate only, fixed fee on every event) and excludes
``free_units_per_total_aggregation``.
"""

from .fields import decode_catalog
from .parse import parse_catalog
from .types import (
    MAX_CATALOG_BYTES,
    MAX_CHARGES_PER_PLAN,
    MAX_CODE_LENGTH,
    MAX_DECIMAL,
    MAX_DECIMAL_PLACES,
    MAX_METRICS,
    MAX_PLANS,
    MAX_TEXT_LENGTH,
    MAX_TIERS,
    MINIMUM_SPEND_CODE,
    PARAMS_BY_MODEL,
    Aggregation,
    Catalog,
    CatalogError,
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

__all__ = [
    "MAX_CATALOG_BYTES",
    "MAX_CHARGES_PER_PLAN",
    "MAX_CODE_LENGTH",
    "MAX_DECIMAL",
    "MAX_DECIMAL_PLACES",
    "MAX_METRICS",
    "MAX_PLANS",
    "MAX_TEXT_LENGTH",
    "MAX_TIERS",
    "MINIMUM_SPEND_CODE",
    "PARAMS_BY_MODEL",
    "Aggregation",
    "Catalog",
    "CatalogError",
    "Charge",
    "ChargeModel",
    "ChargeParams",
    "FlatParams",
    "HourlyParams",
    "Metric",
    "PackageParams",
    "PercentageParams",
    "PerUnitParams",
    "Plan",
    "Rounding",
    "Tier",
    "TieredParams",
    "TransformQuantity",
    "decode_catalog",
    "parse_catalog",
]
