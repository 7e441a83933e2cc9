"""Profile data plane: sources, entity models, profiles and events, segment SQL, CSV/Parquet import."""
