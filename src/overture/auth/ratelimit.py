"""Rate limits on public keys: per key and per client address, in fixed windows, held across processes
on PostgreSQL without a database round-trip per request.

Each process counts requests in memory (`check` is a few dict operations on the event loop). On
PostgreSQL a background thread, every `SYNC_SECONDS`, adds this process's new counts to a shared
table (`INSERT ... ON CONFLICT DO UPDATE SET count = count + excluded.count`) and reads back the totals
of the subjects it has seen in the current window. A request is refused when the last known total plus
what this process counted since is at the limit. So the limit holds across processes within one sync
interval: each of N processes can let through at most what it receives in that interval before it
learns the others' counts (the overshoot is bounded by N x rate x `SYNC_SECONDS`). On SQLite (one
server) the in-process count is the count.

Windows are fixed (`OVERTURE_RATE_LIMIT_WINDOW` seconds, aligned on the clock so every process agrees
which window it is in); `Retry-After` is the time left in the window. Addresses in
`OVERTURE_RATE_LIMIT_EXEMPT` (by default loopback: this machine) are not limited at all; clients
without an IP address (an in-process test client) are not limited per address."""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from overture.auth.models import RateCount
from overture.db import dialects
from overture.db.context import AppContext
from overture.db.engine import transaction

log = logging.getLogger(__name__)

SYNC_SECONDS = 0.5
#: Rows of windows older than this many windows are deleted by the sync.
KEEP_WINDOWS = 2
#: Addresses whose exemption was decided, remembered up to this many (then forgotten at once).
MAX_ADDRESSES = 65_536
_CHUNK = 500
#: A client address's standing: counted; exempt (OVERTURE_RATE_LIMIT_EXEMPT: no limit at all); not an
#: IP address (no per-address limit; the key's still holds).
_COUNTED, _EXEMPT, _NOT_AN_ADDRESS = "counted", "exempt", "not an address"


@dataclass(frozen=True)
class Refusal:
    detail: str
    retry_after: int


class RateLimiter:
    """One per process (`rate_limiter(ctx)`)."""

    def __init__(self, ctx: AppContext) -> None:
        s = ctx.settings
        self._ctx = ctx
        self._window_seconds = s.rate_limit_window
        self._key_limit = s.rate_limit_key * s.rate_limit_window
        self._address_limit = s.rate_limit_address * s.rate_limit_window
        self._exempt_networks = [ipaddress.ip_network(c, strict=False) for c in s.rate_limit_exempt]
        self._exempt: dict[str, str] = {}  # address -> its standing (below)
        self._lock = threading.Lock()
        self._window = -1
        #: subject -> [counted here and not yet sent, being sent now, every process's total as last
        #: read]; one dict lookup per subject on the request path.
        self._counts: dict[str, list[int]] = {}
        self._shared_window = dialects.is_postgres(ctx.engine)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        ctx.closers.append(self.close)

    @property
    def enabled(self) -> bool:
        return bool(self._key_limit or self._address_limit)

    def check(self, key_id: str, address: str | None) -> Refusal | None:
        """Count one request of a public key from `address`; a Refusal when a limit is reached (the
        refused request is not counted)."""
        standing = _COUNTED if address is None else self._standing(address)
        if standing is _EXEMPT:
            return None
        by_address = bool(self._address_limit) and standing is _COUNTED and address is not None
        if not (self._key_limit or by_address):
            return None
        now = self._ctx.clock.now().timestamp()
        window = int(now // self._window_seconds)
        with self._lock:
            if window != self._window:
                self._window = window
                self._counts = {}
            counts = self._counts
            key = address_counts = None
            if self._key_limit:
                subject = "k:" + key_id
                key = counts.get(subject)
                if key is None:
                    key = counts[subject] = [0, 0, 0]
                elif sum(key) >= self._key_limit:
                    return self._refusal("this key", self._key_limit, window, now)
            if by_address:
                subject = "a:" + address[:150]  # type: ignore[index]
                address_counts = counts.get(subject)
                if address_counts is None:
                    address_counts = counts[subject] = [0, 0, 0]
                elif sum(address_counts) >= self._address_limit:
                    return self._refusal("this client address", self._address_limit, window, now)
            if key is not None:
                key[0] += 1
            if address_counts is not None:
                address_counts[0] += 1
        if self._shared_window and self._thread is None:
            self._start()
        return None

    def _refusal(self, who: str, limit: int, window: int, now: float) -> Refusal:
        wait = max(1, math.ceil((window + 1) * self._window_seconds - now))
        per = limit // self._window_seconds
        return Refusal(
            f"rate limit reached: {per} requests per second for {who} "
            f"({limit} per {self._window_seconds} s window); retry after {wait} s",
            wait,
        )

    def _standing(self, address: str) -> str:
        known = self._exempt.get(address)
        if known is None:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:  # not an IP address (an in-process test client's name)
                known = _NOT_AN_ADDRESS
            else:
                known = _EXEMPT if any(ip in n for n in self._exempt_networks) else _COUNTED
            if len(self._exempt) >= MAX_ADDRESSES:
                self._exempt.clear()
            self._exempt[address] = known
        return known

    # -- the shared table (PostgreSQL) --------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="overture-rate-limits", daemon=True)
                self._thread.start()

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)

    def _run(self) -> None:
        syncs = 0
        while not self._stop.wait(SYNC_SECONDS):
            try:
                self.sync(prune=syncs % 120 == 0)
            except Exception:  # the database is away: keep counting here, send it next time
                log.warning("rate limit counts could not be shared; counting in this process", exc_info=True)
            syncs += 1

    def sync(self, *, prune: bool = False) -> None:
        """Send this process's new counts and read back every process's totals (what the thread
        does every SYNC_SECONDS; tests call it directly)."""
        with self._lock:
            window, counts = self._window, self._counts
            deltas = {}
            for subject, entry in counts.items():
                if entry[0]:
                    deltas[subject] = entry[0]
                    entry[1] += entry[0]
                    entry[0] = 0
            subjects = sorted(counts)
        if window < 0:
            return
        try:
            totals = self._exchange(window, deltas, subjects, prune)
        except Exception:
            with self._lock:  # give the counts back: they are sent next time
                for subject, n in deltas.items():
                    counts[subject][0] += n
                    counts[subject][1] -= n
            raise
        with self._lock:  # (a new window replaced `counts`: these totals are of the past one)
            for subject, total in totals.items():
                entry = counts[subject]
                entry[1] -= deltas.get(subject, 0)
                entry[2] = total

    def _exchange(
        self, window: int, deltas: dict[str, int], subjects: Iterable[str], prune: bool
    ) -> dict[str, int]:
        table: Any = RateCount.__table__
        with transaction(self._ctx.sessions) as session:
            if deltas:
                stmt = dialects.insert(session, table)
                stmt = stmt.on_conflict_do_update(
                    index_elements=[table.c.window_no, table.c.subject],
                    set_={"count": table.c.count + stmt.excluded.count},
                )
                rows = [{"window_no": window, "subject": s, "count": n} for s, n in sorted(deltas.items())]
                session.execute(stmt, rows)
            totals: dict[str, int] = {}
            ordered = list(subjects)
            for start in range(0, len(ordered), _CHUNK):
                chunk = ordered[start : start + _CHUNK]
                query = sa.select(table.c.subject, table.c.count).where(
                    table.c.window_no == window, table.c.subject.in_(chunk)
                )
                totals.update({subject: int(count) for subject, count in session.execute(query)})
            if prune:
                session.execute(sa.delete(table).where(table.c.window_no < window - KEEP_WINDOWS))
        return totals


def rate_limiter(ctx: AppContext) -> RateLimiter:
    limiter: RateLimiter = ctx.service("auth.rate_limiter", RateLimiter)
    return limiter
