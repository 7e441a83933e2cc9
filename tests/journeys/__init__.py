"""Journeys (seed 001) over the HTTP API, on SQLite and PostgreSQL application databases."""
