"""The `overture` command."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import sqlalchemy as sa
import typer
from rich.console import Console

from overture.auth import service as auth_service
from overture.auth.models import Workspace
from overture.config import Settings
from overture.db import migrate as migrations
from overture.db.context import AppContext

app = typer.Typer(
    help="Overture: self-hosted campaign orchestration.", no_args_is_help=True, add_completion=False
)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
console = Console()
err = Console(stderr=True)

CREDENTIALS_FILE = "credentials.json"


def _context() -> AppContext:
    ctx = AppContext.from_settings(Settings())
    migrations.upgrade(ctx.settings.resolved_database_url, ctx.engine)
    return ctx


def _single_workspace_id(ctx: AppContext, workspace: str | None) -> str:
    """`--workspace` may be left out when the home holds exactly one workspace."""
    with ctx.transaction(write=False) as session:
        if workspace:
            auth_service.get_workspace(session, workspace)
            return workspace
        ids = list(session.scalars(sa.select(Workspace.id).limit(2)))
    if len(ids) != 1:
        err.print("[red]--workspace is required: there is not exactly one workspace[/red]")
        raise typer.Exit(2)
    return ids[0]


@app.command()
def migrate() -> None:
    """Apply database migrations (also done automatically at start)."""
    settings = Settings()
    ctx = AppContext.from_settings(settings)
    migrations.upgrade(settings.resolved_database_url, ctx.engine)
    heads = sorted(migrations.head_revisions(settings.resolved_database_url))
    console.print(f"database at latest migration: {', '.join(heads)}")
    ctx.close()


@app.command()
def init(
    name: Annotated[str, typer.Option(help="Workspace name.")] = "Default workspace",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    save: Annotated[
        bool, typer.Option(help=f"Also write the keys to OVERTURE_HOME/{CREDENTIALS_FILE} (mode 600).")
    ] = False,
) -> None:
    """Create a workspace with an admin private key and a public key, and print them (once)."""
    ctx = _context()
    with ctx.transaction() as session:
        ws, secret, public = auth_service.bootstrap_workspace(session, name)
        result = {"workspace_id": ws.id, "api_key": secret, "public_key": public}
    if save:
        _write_credentials(ctx.settings.home, result)
    ctx.close()
    if as_json:
        typer.echo(json.dumps(result))
        return
    console.print(f"workspace  [bold]{result['workspace_id']}[/bold]")
    console.print(f"api key    [bold]{result['api_key']}[/bold]  (admin; shown once)")
    console.print(f"public key [bold]{result['public_key']}[/bold]  (SDK decisions and events only)")


def _write_credentials(home: Path, creds: dict[str, str]) -> None:
    path = home / CREDENTIALS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(creds, fh)


@keys_app.command("create")
def keys_create(
    workspace: Annotated[str, typer.Option(help="Workspace id.")],
    scopes: Annotated[
        str, typer.Option(help="Comma-separated scopes, e.g. campaigns:read,analytics:read")
    ] = "",
    name: Annotated[str, typer.Option(help="A label for the key.")] = "cli",
    public: Annotated[bool, typer.Option("--public", help="Create a public (pk_) SDK key.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Create an API key and print its secret (shown once)."""
    ctx = _context()
    scope_list = [s.strip() for s in scopes.split(",") if s.strip()]
    try:
        with ctx.transaction(workspace_id=workspace) as session:
            auth_service.get_workspace(session, workspace)
            key, secret = auth_service.create_key(
                session, workspace, name=name, scopes=scope_list, public=public
            )
            out = {
                "id": key.id,
                "name": key.name,
                "scopes": key.scopes,
                "prefix": key.prefix,
                "secret": secret,
            }
    except Exception as exc:
        from overture.errors import OvertureError

        if isinstance(exc, OvertureError):
            err.print(f"[red]{exc.message}[/red]")
            raise typer.Exit(2)
        raise
    finally:
        ctx.close()
    if as_json:
        typer.echo(json.dumps(out))
    else:
        console.print(f"{out['secret']}  scopes={','.join(out['scopes'])}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    first_run: Annotated[
        bool,
        typer.Option(
            "--first-run",
            help="On an empty home: create a workspace (keys saved to OVERTURE_HOME/credentials.json) "
            "and load demo data; then print the URL, workspace id and key.",
        ),
    ] = False,
) -> None:
    """Serve the API (with the scheduler and a worker in the same process)."""
    import uvicorn

    from overture.api.app import create_app

    ctx = _context()
    if first_run:
        _first_run(ctx)
        creds_path = ctx.settings.home / CREDENTIALS_FILE
        if creds_path.exists():
            creds = json.loads(creds_path.read_text())
            console.print(f"Overture at [bold]http://{host}:{port}[/bold]  (API docs at /docs)")
            console.print(f"workspace  [bold]{creds['workspace_id']}[/bold]")
            console.print(f"api key    [bold]{creds['api_key']}[/bold]")
            console.print(f"public key [bold]{creds['public_key']}[/bold]")
    uvicorn.run(create_app(ctx, run_migrations=False), host=host, port=port, log_level="info")


def _first_run(ctx: AppContext) -> None:
    with ctx.transaction(write=False) as session:
        has_workspace = session.scalar(sa.select(sa.func.count()).select_from(Workspace)) or 0
    if has_workspace:
        return
    with ctx.transaction() as session:
        ws, secret, public = auth_service.bootstrap_workspace(session, "Demo workspace")
        creds = {"workspace_id": ws.id, "api_key": secret, "public_key": public}
    _write_credentials(ctx.settings.home, creds)
    # -- first-run hooks (demo data): add calls below this marker --


if __name__ == "__main__":  # pragma: no cover
    app()
