"""Overture: self-hosted campaign orchestration."""

__version__ = "0.1.0"
