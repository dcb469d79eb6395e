"""The Dagster layer: partitions, assets, checks, jobs, schedules, sensors, resources.

Thin glue only: read the partition, call ``services``/``db``, report metadata.
"""

import warnings

import dagster as dg

# BetaWarning "Parameter `backfill_policy` of function `asset` is currently in beta": the
# invoice assets need BackfillPolicy.multi_run (batched runs per organization range, README
# "Batches"); without this filter every process that loads the definitions prints it 5-20 times.
warnings.filterwarnings(
    "ignore", message=r"Parameter `backfill_policy` of function `asset` is currently in beta", category=dg.BetaWarning
)
