"""The `overture` command."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
import typer
from rich.console import Console
from typer import _click as click  # Typer vendors its own click: catch its exceptions

from overture import __version__
from overture.auth import service as auth_service
from overture.auth.models import ApiKey, Workspace
from overture.config import ENV_PREFIX, SettingsProblem, load_settings
from overture.db import migrate as migrations
from overture.db.context import AppContext
from overture.errors import OvertureError

HELP = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(
    help="Overture: self-hosted campaign orchestration.",
    no_args_is_help=True,
    add_completion=False,
    context_settings=HELP,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True, context_settings=HELP)
app.add_typer(keys_app, name="keys")
secrets_app = typer.Typer(
    help="Secrets at rest: the key ring that encrypts stored credentials.",
    no_args_is_help=True,
    context_settings=HELP,
)
app.add_typer(secrets_app, name="secrets")
dev_app = typer.Typer(
    help="Helpers for trying Overture on one machine.", no_args_is_help=True, context_settings=HELP
)
app.add_typer(dev_app, name="dev")
console = Console()
err = Console(stderr=True)

CREDENTIALS_FILE = "credentials.json"


def main() -> None:
    """The `overture` entry point: every failure is one line on stderr (one JSON object with
    `--json`) and a non-zero exit, never a traceback for bad input or settings."""
    as_json = "--json" in sys.argv[1:]
    try:
        result = app(standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        raise SystemExit(2) from None
    except click.ClickException as exc:
        _fail(exc.format_message(), "usage", as_json, exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", "interrupted", as_json, 130)
    except SettingsProblem as exc:
        _fail(str(exc), "settings", as_json, 2)
    except OvertureError as exc:
        _fail(exc.message, exc.code, as_json, 2, field=exc.field)
    raise SystemExit(result if isinstance(result, int) else 0)


def _fail(message: str, code: str, as_json: bool, exit_code: int, field: str | None = None) -> None:
    if as_json:
        body: dict[str, Any] = {"detail": message, "code": code}
        if field:
            body["field"] = field
        typer.echo(json.dumps(body), err=True)
    else:
        typer.echo(f"error: {' '.join(message.split())}", err=True)
    raise SystemExit(exit_code)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"overture {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Overture: self-hosted campaign orchestration. Settings come from OVERTURE_* variables
    (and .env); see `overture config`."""


def _context() -> AppContext:
    ctx = AppContext.from_settings(load_settings())
    migrations.upgrade(ctx.settings.resolved_database_url, ctx.engine)
    _prepare_secrets(ctx)
    return ctx


def _prepare_secrets(ctx: AppContext) -> None:
    """A key ring that cannot open the stored secrets stops the command in one line (exit 2); a fresh
    home gets its key file; plaintext left by an older version is encrypted."""
    from overture.db.base import Base
    from overture.db.keyring import prepare
    from overture.delivery import models as _destinations  # noqa: F401  (the tables with encrypted columns)

    try:
        prepare(ctx.engine, Base.metadata)
    except Exception:
        ctx.close()
        raise


def _single_workspace_id(ctx: AppContext, workspace: str | None) -> str:
    """`--workspace` may be left out when the home holds exactly one workspace."""
    with ctx.transaction(write=False) as session:
        if workspace:
            auth_service.get_workspace(session, workspace)
            return workspace
        ids = list(session.scalars(sa.select(Workspace.id).limit(2)))
    if len(ids) != 1:
        from overture.errors import Invalid

        raise Invalid("--workspace is required: there is not exactly one workspace", field="workspace")
    return ids[0]


@app.command()
def config(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Print the settings in effect (from OVERTURE_* variables and .env); a bad one is an error."""
    from sqlalchemy.engine import make_url

    settings = load_settings()
    values: dict[str, Any] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if name in ("database_url", "data_url"):
            resolved = getattr(settings, f"resolved_{name}")
            value = make_url(resolved).render_as_string(hide_password=True)
        if "secret" in name and value is not None:
            value = "********"
        values[f"{ENV_PREFIX}{name.upper()}"] = str(value) if isinstance(value, Path) else value
    if as_json:
        typer.echo(json.dumps(values))
        return
    for name, value in values.items():
        shown = ",".join(value) if isinstance(value, list) else value
        typer.echo(f"{name}={shown}")


@app.command()
def migrate() -> None:
    """Apply database migrations (also done automatically at start)."""
    settings = load_settings()
    ctx = AppContext.from_settings(settings)
    migrations.upgrade(settings.resolved_database_url, ctx.engine)
    _prepare_secrets(ctx)
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
    finally:
        ctx.close()
    if as_json:
        typer.echo(json.dumps(out))
    else:
        console.print(f"{out['secret']}  scopes={','.join(out['scopes'])}")


def _key_row(key: Any) -> dict[str, Any]:
    from overture.core.encode import isoformat_z

    def when(value: Any) -> str | None:
        return isoformat_z(value) if value is not None else None

    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "scopes": list(key.scopes),
        "public": key.public,
        "created_at": when(key.created_at),
        "last_used_at": when(key.last_used_at),
        "revoked_at": when(key.revoked_at),
    }


@keys_app.command("list")
def keys_list(
    workspace: Annotated[str | None, typer.Option(help="Workspace id (optional with one workspace).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array.")] = False,
) -> None:
    """List the workspace's API keys (never their secrets), revoked ones included."""
    ctx = _context()
    try:
        ws = _single_workspace_id(ctx, workspace)
        with ctx.transaction(write=False, workspace_id=ws) as session:
            rows = [_key_row(k) for k in auth_service.list_keys(session)]
    finally:
        ctx.close()
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for row in rows:
        state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
        kind = "public" if row["public"] else "private"
        typer.echo(
            f"{row['id']}  {row['prefix']}…  {row['name']}  {kind}  {','.join(row['scopes'])}  {state}"
        )


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (from `overture keys list`).")],
    workspace: Annotated[str | None, typer.Option(help="Workspace id (optional with one workspace).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Revoke a key: a running server refuses it within seconds (PostgreSQL: at once)."""
    ctx = _context()
    try:
        ws = _single_workspace_id(ctx, workspace)
        with ctx.transaction(workspace_id=ws) as session:
            auth_service.revoke_key(session, key_id)
            row = _key_row(session.get(ApiKey, key_id))
    finally:
        ctx.close()
    if as_json:
        typer.echo(json.dumps(row))
    else:
        typer.echo(f"revoked {row['id']} ({row['prefix']}…, {row['name']})")


@secrets_app.command("rotate")
def secrets_rotate(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Re-encrypt every stored secret under a new key while servers keep running, then retire the old
    keys (key file); with OVERTURE_SECRET_KEY=<new>,<old> set on every process, re-encrypt under <new>."""
    from overture.db.base import Base
    from overture.db.keyring import rotate

    ctx = _context()
    try:
        report = rotate(ctx.engine, Base.metadata)
    finally:
        ctx.close()
    if as_json:
        typer.echo(json.dumps(report.__dict__))
        return
    retired = f"; retired {', '.join(report.retired)}" if report.retired else ""
    typer.echo(
        f"{report.reencrypted} values re-encrypted under key {report.new_kid} ({report.source}){retired}"
    )
    if report.todo:
        typer.echo(f"to do: {report.todo}")


@secrets_app.command("status")
def secrets_status(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The key ring (key ids, newest first; never the keys) and how many stored values each key holds."""
    from overture.db.base import Base
    from overture.db.keyring import census

    ctx = _context()
    try:
        ring = ctx.keyring
        counts = census(ctx.engine, Base.metadata)
        out: dict[str, Any] = {
            "source": ring.source,
            "keys": [k.kid for k in ring.current()],
            "values": {("plaintext" if kid is None else kid): n for kid, n in counts.items()},
        }
    finally:
        ctx.close()
    if as_json:
        typer.echo(json.dumps(out))
        return
    typer.echo(f"key ring from {out['source']}: {', '.join(out['keys'])} (newest first)")
    for kid, n in out["values"].items():
        typer.echo(f"{n} values under {kid}")


@secrets_app.command("generate")
def secrets_generate() -> None:
    """Print a new random key (for OVERTURE_SECRET_KEY); nothing is stored."""
    from overture.db.keyring import new_entry

    typer.echo(new_entry())


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="HTTP processes. Above 1, their metrics are added up through PROMETHEUS_MULTIPROC_DIR "
            "(default OVERTURE_HOME/metrics); on SQLite also set OVERTURE_RUN_WORKERS=false and run one "
            "`overture worker`.",
        ),
    ] = 1,
    first_run: Annotated[
        bool,
        typer.Option(
            "--first-run",
            help="On an empty home: create a workspace (keys saved to OVERTURE_HOME/credentials.json) "
            "and load demo data; then print the URL, workspace id and key.",
        ),
    ] = False,
) -> None:
    """Serve the API (with the scheduler and a worker in the same process unless
    OVERTURE_RUN_WORKERS=false; they stop cleanly on SIGTERM/Ctrl-C)."""
    import uvicorn

    from overture.api.app import create_app

    ctx = _context()
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = f"http://{shown_host}:{port}" if ":" not in shown_host else f"http://[{shown_host}]:{port}"
    console.print(
        f"Overture at [bold]{base}[/bold]  (dashboard at {base}/ui/, API docs at {base}/docs)", soft_wrap=True
    )
    if first_run:
        _first_run(ctx)
        creds_path = ctx.settings.home / CREDENTIALS_FILE
        if creds_path.exists():
            from overture.ui.signin import create_link

            creds = json.loads(creds_path.read_text())
            console.print(f"workspace  [bold]{creds['workspace_id']}[/bold]")
            console.print(f"api key    [bold]{creds['api_key']}[/bold]")
            console.print(f"public key [bold]{creds['public_key']}[/bold]")
            token = create_link(ctx, creds["api_key"])
            console.print(
                "Open the dashboard (one-time sign-in link, valid 1 hour):\n"
                f"  [bold]{base}/ui/signin/link?token={token}[/bold]",
                soft_wrap=True,
            )
    from overture.api import serving
    from overture.api.observability import log_config

    logging_config = log_config(ctx.settings.log_format)
    access_log = ctx.settings.log_format != "json"  # JSON: the app logs requests, with their id
    if workers == 1 and ctx.settings.server == "uvicorn":
        uvicorn.run(
            create_app(ctx, run_migrations=False),
            host=host,
            port=port,
            log_config=logging_config,
            access_log=access_log,
        )
        return
    if workers > 1:
        # Several processes: each builds its app from the same settings (the factory), and counts its
        # metrics into files in one directory that `GET /metrics` adds up (prometheus-client).
        metrics_dir = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or ctx.settings.home / "metrics")
        shutil.rmtree(metrics_dir, ignore_errors=True)  # counts of a previous server are not ours
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir.resolve())
    ctx.close()
    serving.run(
        server=ctx.settings.server,
        host=host,
        port=port,
        workers=workers,
        log_config=logging_config,
        access_log=access_log,
    )


@app.command()
def worker(
    concurrency: Annotated[
        int | None, typer.Option(min=1, max=64, help="Job threads (default OVERTURE_WORKER_CONCURRENCY).")
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Run everything due now (schedules, jobs, outbox), then exit.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --once: print the counts as JSON.")] = False,
) -> None:
    """Run the scheduler, job threads and the outbox dispatcher until SIGTERM/SIGINT (graceful)."""
    import logging.config
    import signal
    import threading

    from overture.api.observability import log_config
    from overture.api.tasks import import_all
    from overture.runtime.worker import Runtime, run_once

    ctx = _context()
    logging.config.dictConfig(log_config(ctx.settings.log_format))
    import_all()
    if once:
        counts = run_once(ctx)
        ctx.close()
        if as_json:
            typer.echo(json.dumps(counts))
        else:
            console.print(" ".join(f"{k}={v}" for k, v in counts.items()))
        return
    runtime = Runtime(ctx, concurrency=concurrency or ctx.settings.worker_concurrency)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        err.print(f"received {signal.Signals(signum).name}: finishing current work")
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    err.print(f"worker running (pid {os.getpid()}, {runtime.concurrency} job threads)")
    runtime.start()
    while not stop.wait(1.0):
        pass
    clean = runtime.stop()
    ctx.close()
    raise typer.Exit(0 if clean else 1)


@dev_app.command("receiver")
def dev_receiver(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 9000,
    status: Annotated[int, typer.Option(min=200, max=599, help="HTTP status to answer with.")] = 200,
) -> None:
    """A local webhook receiver: answers every POST with --status and prints one JSON line per
    message (path, Idempotency-Key, possible duplicate, body). Point a webhook destination at
    http://127.0.0.1:9000/hook (the server needs OVERTURE_EGRESS_ALLOW=127.0.0.1/32; `make run` has it)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            line = {
                "path": self.path,
                "idempotency_key": self.headers.get("idempotency-key"),
                "possible_duplicate": self.headers.get("x-overture-possible-duplicate") == "true",
                "body": body,
            }
            typer.echo(json.dumps(line))
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # one line per message is enough
            return

    server = ThreadingHTTPServer((host, port), Receiver)
    typer.echo(f"receiving on http://{host}:{port}/ (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


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
    _load_demo_data(ctx, creds["workspace_id"])
    from overture.ui.demo import seed_demo

    seed_demo(ctx, creds["workspace_id"])
    console.print("demo objects: 3 segments, journey 'Welcome series', paywall campaign 'Upgrade prompts'")


def _progress_bar(quiet: bool):  # type: ignore[no-untyped-def]
    """A Rich progress bar fed by the loaders' progress(stage, done, total) callbacks."""
    from contextlib import nullcontext

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if quiet:
        return nullcontext(None)
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
    )


def _progress_callback(bar: object):  # type: ignore[no-untyped-def]
    tasks: dict[str, object] = {}

    def update(stage: str, done: int, total: int | None) -> None:
        if bar is None:
            return
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)  # type: ignore[attr-defined]
        bar.update(tasks[stage], completed=done, total=total)  # type: ignore[attr-defined]

    return update


class FileFormat(StrEnum):
    csv = "csv"
    parquet = "parquet"


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="A .csv or .parquet file.")],
    model: Annotated[str, typer.Option(help="Model name; created (managed) on first use.")],
    primary_key: Annotated[
        str | None, typer.Option("--primary-key", help="Key column; required when the model is new.")
    ] = None,
    workspace: Annotated[str | None, typer.Option(help="Workspace id (optional with one workspace).")] = None,
    fmt: Annotated[
        FileFormat | None,
        typer.Option("--format", case_sensitive=False, help="csv or parquet (default: from the file name)."),
    ] = None,
    allow_text_fallback: Annotated[
        bool,
        typer.Option(
            "--allow-text-fallback",
            help="Store a new column as text when a few rows do not fit the type of the others "
            "(otherwise the import is refused, naming those rows).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Load CSV or Parquet into an entity model: types inferred (and printed), empty cells null,
    upsert by key. A value that does not fit its column is refused with its row, column and value."""
    from overture.data.loader import import_file

    kind = fmt.value if fmt else None
    result = _bulk_load(
        workspace,
        as_json,
        lambda ctx, ws, progress: import_file(
            ctx,
            ws,
            file,
            model,
            primary_key,
            fmt=kind,
            progress=progress,
            allow_text_fallback=allow_text_fallback,
        ),
    )
    if as_json:
        typer.echo(json.dumps(result.as_dict()))
    else:
        console.print(
            f"{result.rows} rows into model [bold]{result.model}[/bold] ({result.table}): "
            f"{result.inserted} inserted, {result.updated} updated"
            + (f", new columns {', '.join(result.columns_added)}" if result.columns_added else "")
        )
        if result.column_types:
            typer.echo("column types: " + ", ".join(f"{n} {k}" for n, k in result.column_types.items()))
        for name, rows in result.text_fallbacks.items():
            typer.echo(f"column {name} stored as text because of rows {', '.join(map(str, rows))}")


@app.command()
def demo(
    workspace: Annotated[str | None, typer.Option(help="Workspace id (optional with one workspace).")] = None,
    rows: Annotated[int, typer.Option(min=1, max=50_000_000, help="Customers to generate.")] = 100_000,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Load the synthetic `customers` model and its events (idempotent: a second run adds nothing)."""
    from overture.data.demo import load_demo

    result = _bulk_load(
        workspace, as_json, lambda ctx, ws, progress: load_demo(ctx, ws, rows, progress=progress)
    )
    if as_json:
        typer.echo(json.dumps(result.as_dict()))
    else:
        console.print(
            f"model customers ({result.table}): {result.customers_added} customers and "
            f"{result.events_added} events added, {result.customers_total} customers in all"
        )


def _bulk_load(workspace: str | None, as_json: bool, load: Callable[[AppContext, str, Any], Any]) -> Any:
    """Run one bulk load into the (only, or named) workspace behind a progress bar; a refused load
    prints its reason and exits 2."""
    ctx = _context()
    try:
        ws = _single_workspace_id(ctx, workspace)
        with _progress_bar(as_json) as bar:
            return load(ctx, ws, _progress_callback(bar))
    finally:  # a refused load reaches main(): one line, or one JSON object with --json
        ctx.close()


def _load_demo_data(ctx: AppContext, workspace_id: str) -> None:
    """First run: give the new workspace demo customers and events so every surface has data."""
    from overture.data.demo import load_demo

    with _progress_bar(False) as bar:
        result = load_demo(ctx, workspace_id, progress=_progress_callback(bar))
    console.print(f"demo data: {result.customers_total} customers in model 'customers'")


if __name__ == "__main__":  # pragma: no cover
    main()
