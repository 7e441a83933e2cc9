"""Journeys (seed 001): tile DAGs moved along set-based runs on a schedule."""
