"""Real-time paywall campaigns (seed 004): placements, audiences, experiments, register(placement)."""
