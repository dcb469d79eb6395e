"""The Dagster layer: partitions, assets, checks, jobs, schedules, sensors, resources.

Thin glue only: read the partition, call ``services``/``db``, report metadata.
"""
