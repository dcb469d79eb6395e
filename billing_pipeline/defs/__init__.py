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
# PreviewWarning "Specifying a partitions_def on an AssetCheckSpec is currently in preview": the
# usage reconciliation check is partitioned like the drafts so that it reports one result per
# organization partition (README "Dagster").
warnings.filterwarnings(
    "ignore",
    message=r"Specifying a partitions_def on an AssetCheckSpec is currently in preview",
    category=dg.PreviewWarning,
)
