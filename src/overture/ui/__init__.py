"""The web dashboard served at /ui/: server-rendered pages (Jinja2 + htmx) over the same services the
API calls. It sits in the same layer as `overture.api` and never reads a surface's tables itself."""
