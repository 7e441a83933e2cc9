"""Paywall campaign API tests (seed 004)."""
