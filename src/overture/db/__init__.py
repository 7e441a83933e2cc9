"""Application database: engine and sessions, declarative base, migrations, change notifications."""
