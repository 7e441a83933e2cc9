"""Workspaces (the tenant), API keys and scopes, and the dependency that resolves the caller."""
