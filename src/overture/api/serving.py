"""Run the application under an HTTP server: uvicorn (the default) or granian (`OVERTURE_SERVER`).

Both load the app from the same factory in each server process (`--workers N` starts N of them),
so every process builds its own context from the settings."""

from __future__ import annotations

from typing import Any

SERVERS = ("uvicorn", "granian")
APP_FACTORY = "overture.api.app:create_app"


def run(
    target: str = APP_FACTORY,
    *,
    server: str = "uvicorn",
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    log_config: dict[str, Any] | None = None,
    access_log: bool = True,
) -> None:
    """Serve `target` (a `module:factory` import string) until SIGTERM/SIGINT."""
    if server == "granian":
        try:
            from granian import Granian
            from granian.constants import Interfaces
        except ImportError:
            raise SystemExit(
                "OVERTURE_SERVER=granian needs the granian extra: pip install 'overture[granian]'"
            ) from None
        Granian(
            target,
            factory=True,
            address=host,
            port=port,
            interface=Interfaces.ASGI,
            workers=workers,
            log_dictconfig=log_config,
            log_access=access_log,
        ).serve()
        return
    import uvicorn

    uvicorn.run(
        target,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=log_config,
        access_log=access_log,
    )
