"""The app factory: mounts every surface's router, maps errors to HTTP, serves health and OpenAPI."""
