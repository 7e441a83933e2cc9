"""Segments: named filter trees over an entity model, with reach evaluation and members."""
