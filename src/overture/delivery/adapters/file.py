"""File destinations: CSV or JSON lines, to a directory under OVERTURE_HOME/files or to S3.

No reader ever sees a partial file under its final name. Locally we write a hidden temporary file in
the same directory, fsync it and `os.replace` it into place (atomic on POSIX). On S3 we write the file
locally first and upload it with one PUT or a multipart upload, and S3 only makes an object visible
once that PUT or CompleteMultipartUpload succeeds (a failed multipart upload is aborted).

Local paths are confined to OVERTURE_HOME/files: a destination is configured over the API, and an
unconfined path would let any key holder overwrite the server's own files."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from overture.core.encode import to_json, to_text
from overture.delivery.adapters.base import Adapter, Target, parse_config
from overture.delivery.egress import EgressError, EgressRefused, guard_for
from overture.delivery.messages import Message, Outcome
from overture.delivery.schemas import FileConfig
from overture.errors import Invalid, OvertureError

if TYPE_CHECKING:
    from overture.db.context import AppContext

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,199}$")
# A JSON line is `core.encode.to_json` of the row: orjson writes the types it encodes the same way
# natively, and hands the others (instants, Decimals, bytes, sets...) to to_json.
_JSON_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


def files_root(ctx: AppContext) -> Path:
    return (ctx.settings.home / "files").resolve()


@dataclass(frozen=True)
class Location:
    """Where a file destination writes: a local directory, or an S3 `bucket/prefix`."""

    protocol: str  # "local" | "s3"
    base: str
    storage_options: dict[str, Any]

    def join(self, name: str) -> str:
        return f"{self.base.rstrip('/')}/{name}" if self.base.rstrip("/") else name

    def url(self, name: str) -> str:
        return self.join(name) if self.protocol == "local" else f"s3://{self.join(name)}"


def resolve_location(ctx: AppContext, cfg: FileConfig) -> Location:
    url = cfg.url
    if url.lower().startswith("s3://"):
        return Location("s3", url[5:].rstrip("/"), dict(cfg.storage_options))
    raw = url[7:] if url.lower().startswith("file://") else url
    root = files_root(ctx)
    path = Path(raw)
    resolved = (path if path.is_absolute() else root / path).resolve()
    if not resolved.is_relative_to(root):
        raise Invalid(
            f"config.url: local file destinations must be inside {root} (give a relative path)",
            field="config.url",
        )
    return Location("local", str(resolved), {})


def endpoint_urls(storage_options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, url) of every S3 endpoint a config names: these connections must pass the guard too."""
    found: list[tuple[str, str]] = []
    if isinstance(storage_options.get("endpoint_url"), str):
        found.append(("config.storage_options.endpoint_url", storage_options["endpoint_url"]))
    client_kwargs = storage_options.get("client_kwargs")
    if isinstance(client_kwargs, Mapping) and isinstance(client_kwargs.get("endpoint_url"), str):
        found.append(("config.storage_options.client_kwargs.endpoint_url", client_kwargs["endpoint_url"]))
    return found


def _write_rows(
    fh: IO[bytes], rows: Iterable[Mapping[str, Any]], fmt: str, columns: Sequence[str] | None
) -> None:
    if fmt == "jsonl":
        for row in rows:
            fh.write(orjson.dumps(row, option=_JSON_OPTS, default=to_json))
            fh.write(b"\n")
        return
    text = io.TextIOWrapper(fh, encoding="utf-8", newline="", write_through=False)
    try:
        writer = csv.writer(text)
        iterator = iter(rows)
        header = list(columns) if columns is not None else None
        first = next(iterator, None)
        if header is None:
            header = list(first) if first is not None else []
        writer.writerow(header)
        known = set(header)
        if first is not None:
            iterator = _chain_one(first, iterator)
        for row in iterator:
            extra = row.keys() - known
            if extra:
                raise Invalid(f"row has columns not in the header: {sorted(extra)[:5]}", field="columns")
            writer.writerow([to_text(row.get(c)) for c in header])
        text.flush()
    finally:
        text.detach()


def _chain_one(first: Mapping[str, Any], rest: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    yield first
    yield from rest


def _is_duckdb_relation(rows: Any) -> bool:
    return type(rows).__name__ == "DuckDBPyRelation" and hasattr(rows, "write_csv")


def _produce(tmp: Path, rows: Any, fmt: str, columns: Sequence[str] | None) -> None:
    """Write `rows` to the local file `tmp` in `fmt`, with the fastest writer that fits the input."""
    if isinstance(rows, str | os.PathLike):
        # A file the caller already produced (e.g. with DuckDB COPY): copy it in place.
        with open(rows, "rb") as src, tmp.open("wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        return
    if _is_duckdb_relation(rows):
        target = str(tmp).replace("'", "''")
        if fmt == "csv":
            rows.write_csv(str(tmp), header=True)
        else:
            rows.query("rows_to_write", f"COPY (SELECT * FROM rows_to_write) TO '{target}' (FORMAT JSON)")
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        return
    with tmp.open("wb") as fh:
        _write_rows(fh, rows, fmt, columns)
        fh.flush()
        os.fsync(fh.fileno())


def _check_name(name: str) -> None:
    if not _NAME.match(name) or ".." in name:
        raise Invalid("file name must be 1-200 characters of letters, digits, '.', '_' or '-'", field="name")


def write_file(
    ctx: AppContext,
    destination: Any,
    rows: Any,
    name: str,
    *,
    columns: Sequence[str] | None = None,
) -> str:
    """Write one complete file named `name` to a file destination and return its URL or path.

    `rows` is an iterable of mappings (CSV columns: `columns`, else the first row's keys), a DuckDB
    relation (written by DuckDB itself: millions of rows per second), or the path of a file already in
    the destination's format. The file appears under its final name only once complete; writing the
    same name again replaces it whole. Raises Invalid (bad config, name or path), EgressRefused, or
    OSError/botocore errors from storage."""
    target = destination if isinstance(destination, Target) else Target.of(destination)
    if target.type != "file":
        raise Invalid(f"destination {target.id} is a {target.type} destination, not a file one")
    _check_name(name)
    cfg = parse_config(FileConfig, target.config)
    location = resolve_location(ctx, cfg)
    if location.protocol == "local":
        directory = Path(location.base)
        directory.mkdir(parents=True, exist_ok=True)
        final = directory / name
        tmp = directory / f".{name}.{uuid.uuid4().hex}.tmp"
        try:
            _produce(tmp, rows, cfg.format, columns)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return str(final)
    _check_s3_egress(ctx, location.storage_options)
    scratch = ctx.settings.home / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix="upload-", suffix=".tmp", dir=scratch)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _produce(tmp, rows, cfg.format, columns)
        fs = _s3_filesystem(location.storage_options)
        fs.put_file(str(tmp), location.join(name))
    finally:
        tmp.unlink(missing_ok=True)
    return location.url(name)


def _s3_filesystem(storage_options: dict[str, Any]) -> Any:
    import fsspec

    # fsspec caches filesystem instances by their options: one client (and pool) per config.
    return fsspec.filesystem("s3", **storage_options)


def _check_s3_egress(ctx: AppContext, storage_options: Mapping[str, Any]) -> None:
    guard = guard_for(ctx)
    for field, url in endpoint_urls(storage_options):
        try:
            guard.check_url(url)
        except EgressError as exc:
            raise type(exc)(f"{field}: {exc.message}", field=field) from None


def batch_file_name(messages: Sequence[Message], fmt: str) -> str:
    """A name that depends only on the batch's keys: a re-sent batch overwrites its own file
    instead of adding a second copy of its rows."""
    digest = hashlib.sha256("\n".join(m.idempotency_key for m in messages).encode()).hexdigest()[:24]
    return f"part-{digest}.{fmt}"


class FileAdapter(Adapter):
    type = "file"
    config_model = FileConfig

    def normalize(self, ctx: AppContext, config: dict[str, Any]) -> dict[str, Any]:
        stored = super().normalize(ctx, config)
        resolve_location(ctx, parse_config(FileConfig, stored))  # 422 for a path outside the root
        return stored

    def check_egress(self, ctx: AppContext, config: dict[str, Any]) -> None:
        _check_s3_egress(ctx, config.get("storage_options") or {})

    def send_batch(self, ctx: AppContext, target: Target, messages: Sequence[Message]) -> list[Outcome]:
        """The whole batch becomes one file part: it is written completely or not at all, so every
        message shares the batch's outcome."""
        if not messages:
            return []
        try:
            cfg = parse_config(FileConfig, target.config)
            columns: dict[str, None] = {"idempotency_key": None}
            rows = []
            for m in messages:
                rows.append({**m.payload, "idempotency_key": m.idempotency_key})
                columns.update(dict.fromkeys(m.payload))
            write_file(ctx, target, rows, batch_file_name(messages, cfg.format), columns=list(columns))
        except EgressRefused as exc:
            return [Outcome.failed(m.idempotency_key, f"egress refused: {exc.message}") for m in messages]
        except EgressError as exc:
            return [Outcome.retry(m.idempotency_key, exc.message) for m in messages]
        except OvertureError as exc:
            return [Outcome.failed(m.idempotency_key, exc.message) for m in messages]
        except Exception as exc:  # storage errors (disk full, S3 down) are worth another try
            error = f"storage error: {type(exc).__name__}: {exc}"
            return [Outcome.retry(m.idempotency_key, error) for m in messages]
        return [Outcome.sent(m.idempotency_key) for m in messages]
