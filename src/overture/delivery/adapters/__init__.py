"""Destination types: one module per type, each an `Adapter`."""
