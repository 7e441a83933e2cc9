"""Broadcasts (seed 002): sends with a public summary, status and metrics API."""
