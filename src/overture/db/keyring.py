"""Secrets at rest: the key ring, the column type that encrypts with it, and the passes over stored
values (census at start, encryption of plaintext left by older versions, rotation).

The ring is a list of random strings, newest first: `OVERTURE_SECRET_KEY` (comma-separated) or the
file `OVERTURE_HOME/secret_key` (one per line, mode 600, made on first use). From each entry HKDF
derives a Fernet key (AES-128-CBC + HMAC-SHA256, `cryptography`) and a short key id, so a stored value
names the key that opens it: `enc1:<key id>:<Fernet token>`, kept as a JSON string in the JSON column.
New values use the newest key; any key of the ring decrypts. The same entries sign dashboard cookies
(`overture.ui.signin`), under another derivation.

A process re-reads the file when it changed (checked before each encryption) and when it meets a key
id it does not hold, so `overture secrets rotate` (see `rotate`) works under running servers."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import secrets
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.dialects.postgresql import JSONB

from overture.errors import Unavailable

if TYPE_CHECKING:
    from overture.config import Settings

__all__ = [
    "KEY_FILE",
    "EncryptedJSON",
    "KeyRing",
    "RotateReport",
    "SecretKeyProblem",
    "attach",
    "census",
    "encrypted_columns",
    "new_entry",
    "prepare",
    "reencrypt",
    "ring_of",
    "rotate",
]

KEY_FILE = "secret_key"
PREFIX = "enc1:"
#: Rows re-encrypted per write transaction: short locks, while the server keeps serving.
BATCH_SIZE = 100
#: After the ring file changed, how long rotate waits before its last pass: a process that encrypted
#: with the old key just before it noticed the change has committed by then, and the pass catches it.
ROTATE_GRACE_SECONDS = 2.0
_ENV = "OVERTURE_SECRET_KEY"


class SecretKeyProblem(Unavailable):
    """The key ring cannot open what is stored (or is missing): one line for people."""

    code = "secret_key"


@dataclass(frozen=True)
class _Key:
    kid: str
    entry: str
    fernet: Fernet


def _hkdf(entry: str, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(entry.encode())


def _derive(entry: str) -> _Key:
    kid = _hkdf(entry, b"overture key id v1", 4).hex()
    key = base64.urlsafe_b64encode(_hkdf(entry, b"overture secrets at rest v1", 32))
    return _Key(kid, entry, Fernet(key))


def new_entry() -> str:
    """A new random key (64 URL-safe characters)."""
    return secrets.token_urlsafe(48)


def split_entries(text: str) -> list[str]:
    """The entries of OVERTURE_SECRET_KEY (commas) or of the key file (lines)."""
    return [part.strip() for part in text.replace(",", "\n").splitlines() if part.strip()]


def _kid_of(stored: Any) -> str | None:
    """The key id a stored value names; None for plaintext (written before encryption existed)."""
    if isinstance(stored, str) and stored.startswith(PREFIX):
        return stored[len(PREFIX) :].split(":", 1)[0]
    return None


def _write_file(path: Path, entries: list[str], *, exclusive: bool = False) -> None:
    """Write the ring file atomically (readers see the old ring or the new, never a partial one), mode
    600. `exclusive`: only if there is none yet (FileExistsError otherwise)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write("".join(f"{e}\n" for e in entries))
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class KeyRing:
    """The keys of one process, newest first: from the environment (fixed for the process's life) or
    from the key file (re-read when it changes)."""

    def __init__(self, env_value: str | None, path: Path) -> None:
        self.from_env = bool(env_value)
        self.path = path
        self._lock = threading.Lock()
        self._keys: tuple[_Key, ...] = tuple(_derive(e) for e in split_entries(env_value or ""))
        self._stamp: tuple[int, int, int] | None = None
        if not self.from_env:
            self.current(reload=True)

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        return cls(settings.secret_key, settings.home / KEY_FILE)

    @property
    def source(self) -> str:
        return _ENV if self.from_env else str(self.path)

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def current(self, *, reload: bool = False) -> tuple[_Key, ...]:
        """The ring, newest first (re-read from the file when it changed, or when `reload`)."""
        if self.from_env:
            return self._keys
        stamp = self._file_stamp()
        if not reload and stamp == self._stamp:
            return self._keys
        with self._lock:
            try:
                text = self.path.read_text()
            except FileNotFoundError:
                text = ""
            # (the stamp is taken before reading: a change in between makes the next call read again)
            self._keys, self._stamp = tuple(_derive(e) for e in split_entries(text)), stamp
            return self._keys

    def entries(self) -> list[str]:
        return [k.entry for k in self.current()]

    def ensure(self) -> None:
        """Make the key file when there is no key at all (a fresh home). Two processes racing: one
        writes it, the other reads it."""
        if self.current():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            _write_file(self.path, [new_entry()], exclusive=True)
        self.current(reload=True)

    def encrypt(self, data: bytes) -> str:
        keys = self.current()
        if not keys:
            self.ensure()
            keys = self.current()
        newest = keys[0]
        return f"{PREFIX}{newest.kid}:{newest.fernet.encrypt(data).decode()}"

    def decrypt(self, stored: str) -> bytes:
        kid = _kid_of(stored) or ""
        token = stored[len(PREFIX) + len(kid) + 1 :]
        key = self._find(kid)
        try:
            return key.fernet.decrypt(token)
        except InvalidToken:
            raise SecretKeyProblem(
                f"a stored secret under key {kid} fails its integrity check (changed in the database?)"
            ) from None

    def _find(self, kid: str) -> _Key:
        for keys in (self.current(), self.current(reload=True)):  # an unknown id: maybe rotated meanwhile
            for key in keys:
                if key.kid == kid:
                    return key
        raise SecretKeyProblem(self.missing_message([kid]))

    def missing_message(self, kids: list[str]) -> str:
        held = ", ".join(k.kid for k in self.current()) or "no key"
        ignored = f" ({self.path} is not read while it is set)" if self.path.exists() else ""
        where = (
            f"{_ENV} holds {held}{ignored}"
            if self.from_env
            else f"{_ENV} is not set and {self.path} holds {held}"
            if self.current()
            else f"{_ENV} is not set and {self.path} does not exist"
        )
        return (
            f"stored secrets are encrypted under key {', '.join(sorted(kids))}, but {where}; "
            f"set {_ENV} (or restore {self.path.name} in OVERTURE_HOME) to the key ring they were "
            "written with"
        )


# -- the column type ------------------------------------------------------------------------------
_RINGS: weakref.WeakKeyDictionary[sa.Dialect, KeyRing] = weakref.WeakKeyDictionary()


def attach(engine: sa.Engine, ring: KeyRing) -> None:
    """Give an engine its key ring (encrypted columns find it through the engine's dialect)."""
    _RINGS[engine.dialect] = ring


def ring_of(bind: sa.Engine | sa.Dialect) -> KeyRing:
    dialect = bind.dialect if isinstance(bind, sa.Engine) else bind
    ring = _RINGS.get(dialect)
    if ring is None:
        raise SecretKeyProblem("this database engine has no key ring (made outside AppContext.from_settings)")
    return ring


class EncryptedJSON(sa.TypeDecorator[Any]):
    """A JSON value stored encrypted, as the JSON string `enc1:<key id>:<token>`. A plaintext value
    (written before encryption existed) still reads; `prepare` at start encrypts it."""

    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        return dialect.type_descriptor(JSONB() if dialect.name == "postgresql" else sa.JSON())

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        return ring_of(dialect).encrypt(json.dumps(value, separators=(",", ":")).encode())

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Any:
        if _kid_of(value) is None:
            return value
        return json.loads(ring_of(dialect).decrypt(value))


# -- passes over the stored values ------------------------------------------------------------------
def encrypted_columns(metadata: sa.MetaData) -> list[tuple[sa.Table, sa.Column[Any]]]:
    return [
        (table, column)
        for table in metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, EncryptedJSON)
    ]


def _raw(column: sa.Column[Any]) -> sa.ColumnElement[Any]:
    """The column as stored (the token, not its plaintext)."""
    return sa.type_coerce(column, sa.JSON().with_variant(JSONB(), "postgresql"))


def _pages(
    engine: sa.Engine, table: sa.Table, column: sa.Column[Any], *, write: bool, size: int
) -> Iterator[tuple[sa.Connection, list[tuple[Any, Any]]]]:
    """The rows' (primary key, stored value) a page at a time, each page in its own transaction
    (a writing one locks its rows: SQLite's write lock, PostgreSQL's FOR UPDATE)."""
    (pk,) = table.primary_key.columns
    last: Any = None
    while True:
        stmt = sa.select(pk, _raw(column)).where(column.is_not(None)).order_by(pk).limit(size)
        if last is not None:
            stmt = stmt.where(pk > last)
        if write and engine.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        with engine.connect() as conn:
            if write:
                conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                rows = [(row[0], row[1]) for row in conn.execute(stmt)]
                if not rows:
                    return
                yield conn, rows
        last = rows[-1][0]


def census(engine: sa.Engine, metadata: sa.MetaData) -> Counter[str | None]:
    """How many stored values each key id holds (None: plaintext)."""
    counts: Counter[str | None] = Counter()
    for table, column in encrypted_columns(metadata):
        for _conn, rows in _pages(engine, table, column, write=False, size=1000):
            counts.update(_kid_of(value) for _pk, value in rows)
    return counts


def reencrypt(
    engine: sa.Engine, metadata: sa.MetaData, *, plaintext_only: bool = False, size: int = BATCH_SIZE
) -> int:
    """Encrypt every stored value that is not under the ring's newest key (only plaintext ones with
    `plaintext_only`), a page per write transaction; `updated_at` stays as it was. Returns how many."""
    ring = ring_of(engine)
    ring.ensure()
    changed = 0
    for table, column in encrypted_columns(metadata):
        (pk,) = table.primary_key.columns
        # Re-encrypting changes nothing a user did: keep the columns an UPDATE would stamp.
        kept = {c.name: c for c in table.columns if c.onupdate is not None}
        for conn, rows in _pages(engine, table, column, write=True, size=size):
            newest = ring.current()[0].kid
            for key, stored in rows:
                kid = _kid_of(stored)
                if kid == newest or (plaintext_only and kid is not None):
                    continue
                plain = stored if kid is None else json.loads(ring.decrypt(stored))
                conn.execute(table.update().where(pk == key).values({column.name: plain, **kept}))
                changed += 1
    return changed


def prepare(engine: sa.Engine, metadata: sa.MetaData) -> Counter[str | None]:
    """At start (after migrations): refuse, in one line, a ring that cannot open what is stored;
    otherwise make the key file if there is no key yet and encrypt plaintext values left by a version
    before encryption. Returns the census."""
    ring = ring_of(engine)
    counts = census(engine, metadata)
    held = {k.kid for k in ring.current(reload=True)}
    unknown = [kid for kid in counts if kid is not None and kid not in held]
    if unknown:
        raise SecretKeyProblem(ring.missing_message(unknown))
    ring.ensure()
    if counts.get(None):
        reencrypt(engine, metadata, plaintext_only=True)
    return counts


@dataclass
class RotateReport:
    new_kid: str
    retired: list[str]
    reencrypted: int
    source: str
    #: What the operator still has to do (the environment cannot be rewritten by us).
    todo: str | None = None
    census: dict[str, int] = field(default_factory=dict)


@contextlib.contextmanager
def _rotation_lock(path: Path) -> Iterator[None]:
    """One rotation at a time per key file."""
    lock = path.with_name(f".{path.name}.lock")
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def rotate(
    engine: sa.Engine,
    metadata: sa.MetaData,
    *,
    grace: float = ROTATE_GRACE_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> RotateReport:
    """Re-encrypt every stored secret under a new key while servers keep running.

    Key file: write the ring [new, old...] (running processes pick it up at their next encryption, or
    when they meet the new key id); re-encrypt page by page; pass again after `grace` seconds until a
    pass finds nothing under an old key (a write encrypted just before a process noticed the change);
    then retire the old keys (the file holds the new key only).

    OVERTURE_SECRET_KEY: a process's environment cannot change under it, so the operator adds the new
    key first (`<new>,<old>` on every process, restarted); rotate then re-encrypts under the first entry
    and says to drop the others."""
    ring = ring_of(engine)
    if ring.from_env:
        keys = ring.current()
        if len(keys) < 2:
            raise SecretKeyProblem(
                f"{_ENV} is set, so rotate cannot add a key to it: put a new key first on every process "
                f"({_ENV}=<new>,<current>; `overture secrets generate` makes one), restart them, then run "
                "`overture secrets rotate` again"
            )
        changed = reencrypt(engine, metadata)
        counts = census(engine, metadata)
        return RotateReport(
            new_kid=keys[0].kid,
            retired=[],
            reencrypted=changed,
            source=ring.source,
            todo=f"every secret is under key {keys[0].kid}, the first entry of {_ENV}; the other "
            f"{len(keys) - 1} entr{'y is' if len(keys) == 2 else 'ies are'} no longer used: set {_ENV} to "
            "its first entry alone on every process (at their next restart)",
            census={str(k): v for k, v in counts.items()},
        )
    with _rotation_lock(ring.path):
        ring.ensure()
        old = ring.current(reload=True)
        entry = new_entry()
        _write_file(ring.path, [entry, *(k.entry for k in old)])
        changed_at = time.monotonic()
        new_kid = ring.current(reload=True)[0].kid
        changed = reencrypt(engine, metadata)
        while True:
            sleep(max(0.0, grace - (time.monotonic() - changed_at)))
            stragglers = reencrypt(engine, metadata)
            changed += stragglers
            if not stragglers:
                break
            changed_at = time.monotonic()
        counts = census(engine, metadata)
        if set(counts) - {new_kid}:  # (a last pass found nothing, so this is a bug, not a race)
            left = dict(counts)
            raise SecretKeyProblem(f"values remain under other keys than {new_kid}: {left}; rotate again")
        _write_file(ring.path, [entry])
        ring.current(reload=True)
        return RotateReport(
            new_kid=new_kid,
            retired=[k.kid for k in old],
            reencrypted=changed,
            source=ring.source,
            census={str(k): v for k, v in counts.items()},
        )
