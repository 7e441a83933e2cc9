"""Orchestrated experiences (seed 000): campaign > stage > experience hierarchies and candidates."""
