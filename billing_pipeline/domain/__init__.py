"""Pure billing rules: money, periods, catalog, pricing, aggregation, invoices.

Nothing in this package imports Dagster, SQLAlchemy, boto3, stripe, jinja2 or any
other part of billing_pipeline outside ``domain``.
"""
