"""Log destinations: messages go to the Python log and, by default, a JSON-lines file under
OVERTURE_HOME/delivery-log/ (useful for demos and for seeing what a journey would send)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from overture.core.encode import isoformat_z
from overture.delivery.adapters.base import Adapter, Target, parse_config
from overture.delivery.messages import Message, Outcome
from overture.delivery.schemas import LogConfig

if TYPE_CHECKING:
    from overture.db.context import AppContext

log = logging.getLogger("overture.delivery.log")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_file_lock = threading.Lock()


def log_path(ctx: AppContext, target: Target) -> Path:
    return ctx.settings.home / "delivery-log" / target.workspace_id / f"{target.id}.jsonl"


class LogAdapter(Adapter):
    type = "log"
    config_model = LogConfig

    def send_batch(self, ctx: AppContext, target: Target, messages: Sequence[Message]) -> list[Outcome]:
        if not messages:
            return []
        cfg = parse_config(LogConfig, target.config)
        level = _LEVELS[cfg.level]
        at = isoformat_z(ctx.clock.now())
        lines: list[bytes] = []
        for m in messages:
            record = {
                "at": at,
                "destination_id": target.id,
                "idempotency_key": m.idempotency_key,
                "attempt": m.attempt,
                "possible_duplicate": m.possible_duplicate,
                "payload": m.payload,
            }
            try:
                lines.append(orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS, default=str))
            except TypeError as exc:
                lines.append(b"")
                log.warning(
                    "destination %s: unserializable payload for %s: %s", target.id, m.idempotency_key, exc
                )
            if log.isEnabledFor(level):
                log.log(level, "destination %s (%s): %s", target.name, target.id, lines[-1].decode())
        if not cfg.file:
            return [Outcome.sent(m.idempotency_key) for m in messages]
        path = log_path(ctx, target)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with _file_lock, path.open("ab") as fh:
                fh.write(b"".join(line + b"\n" for line in lines if line))
        except OSError as exc:
            return [Outcome.retry(m.idempotency_key, f"cannot write {path}: {exc}") for m in messages]
        return [
            Outcome.sent(m.idempotency_key)
            if line
            else Outcome.failed(m.idempotency_key, "payload is not JSON")
            for m, line in zip(messages, lines, strict=True)
        ]
