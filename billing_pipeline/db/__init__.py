"""Persistence: SQLAlchemy tables, Alembic migrations and every SQL query of the project."""
