"""Alembic migrations of the API's database (one set for SQLite and PostgreSQL)."""
