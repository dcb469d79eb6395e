"""Use cases: domain rules applied to data read and written through ``db``.

The Dagster layer and the CLI call these; they never import Dagster themselves.
"""
