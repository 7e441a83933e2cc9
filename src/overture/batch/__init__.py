"""Batch decisioning campaigns (seed 003): decision flows over a segment that write files."""
