"""Reliability under real faults, with real processes on loopback: kill -9 while dispatching,
several workers on PostgreSQL, a worker paused (SIGSTOP) past its lease. Bounded in count and time."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from overture.auth import service as auth_service
from overture.config import Settings
from overture.db import migrate
from overture.db.base import new_id
from overture.db.context import AppContext
from overture.delivery.models import Destination
from overture.runtime.models import Job, JobStatus, OutboxMessage, OutboxStatus
from overture.runtime.outbox import OutboxItem, enqueue
from tests.conftest import PG_URL
from tests.runtime.receiver import ReceiverProcess
from tests.runtime.worker_proc import EFFECTS_DDL

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A throwaway PostgreSQL database of this test's own."""
    if not PG_URL:
        pytest.skip("OVERTURE_TEST_POSTGRES_URL not set")
    name = f"overture_rel_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        # A throwaway database: skip the WAL flush per commit (a killed *process* loses nothing).
        conn.execute(sa.text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    try:
        yield sa.engine.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'rel.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


def _context(url: str, home: Path) -> AppContext:
    ctx = AppContext.from_settings(
        Settings(home=home, database_url=url, egress_allow=["127.0.0.1/32"], run_workers=False)
    )
    migrate.upgrade(url, ctx.engine)
    with ctx.transaction() as session:
        session.execute(sa.text(EFFECTS_DDL))
    return ctx


class Spawner:
    """A process that has imported everything and forks workers on request (fast restarts)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.runtime.worker_proc", "--spawner"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("OVERTURE_")},
        )
        self.pids: list[int] = []

    def spawn(self, argv: list[str]) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(argv) + "\n")
        self.proc.stdin.flush()
        pid = int(self.proc.stdout.readline().split()[1])
        self.pids.append(pid)
        return pid

    def close(self) -> None:
        for pid in self.pids:  # whatever a failed test left running
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def spawner() -> Iterator[Spawner]:
    s = Spawner()
    yield s
    s.close()


class Worker:
    """One worker process (forked by the spawner); its output is read from files."""

    def __init__(self, spawner: Spawner, url: str, home: Path, *args: str) -> None:
        tag = uuid.uuid4().hex[:6]
        self.out_path, self.stderr_path = home / f"worker-{tag}.out", home / f"worker-{tag}.err"
        self.pid = spawner.spawn(
            [
                "--db",
                url,
                "--home",
                str(home),
                "--out",
                str(self.out_path),
                "--err",
                str(self.stderr_path),
                *args,
            ]
        )
        self.wait_for("READY", 30)

    @property
    def lines(self) -> list[str]:
        return self.out_path.read_text().splitlines() if self.out_path.exists() else []

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def wait_for(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if line.startswith(prefix):
                    return line
            if not self.alive():
                raise AssertionError(f"worker exited: {self.stderr_path.read_text()[-2000:]}")
            time.sleep(0.02)
        raise AssertionError(f"worker did not print {prefix} within {timeout}s")

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        _wait_until(lambda: not self.alive(), 10, "the killed worker to go")

    def terminate(self) -> None:
        os.kill(self.pid, signal.SIGTERM)
        self.wait_for("STOPPED", 20)
        _wait_until(lambda: not self.alive(), 10, "the worker to exit")


def _wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _workspace(ctx: AppContext) -> str:
    with ctx.transaction() as session:
        ws, _, _ = auth_service.bootstrap_workspace(session, "reliability")
        return ws.id


# -- kill -9 while dispatching ------------------------------------------------------------------


@pytest.mark.parametrize(("batch", "messages", "kills"), [(1, 10_000, 22), (50, 10_000, 22)])
def test_kill9_dispatcher_repeatedly__every_message_delivered__duplicates_bounded_and_flagged(
    tmp_path: Path, spawner: Spawner, batch: int, messages: int, kills: int
) -> None:
    # Given 10,000 messages owed to a local webhook receiver,
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    url = f"sqlite:///{tmp_path / 'rel.db'}"
    ctx = _context(url, tmp_path)
    receiver = ReceiverProcess(tmp_path / "received.log")
    try:
        ws = _workspace(ctx)
        with ctx.transaction() as session:
            dest = Destination(workspace_id=ws, name="hook", type="webhook", config={"url": receiver.url})
            session.add(dest)
            session.flush()
            enqueue(
                session,
                (OutboxItem(ws, dest.id, f"run-1:m{i}:s1", {"member": i}, "test") for i in range(messages)),
            )

        def unsettled() -> int:
            with ctx.transaction(write=False) as session:
                return int(
                    session.scalar(
                        sa.select(sa.func.count()).where(OutboxMessage.status.not_in(OutboxStatus.TERMINAL))
                    )
                    or 0
                )

        # When a dispatcher process is killed with SIGKILL at random instants, again and again,
        killed_mid_dispatch = 0
        for _ in range(kills):
            worker = Worker(spawner, url, tmp_path, "--dispatch", "--batch", str(batch), "--lease", "1")
            time.sleep(rng.uniform(0.05, 0.35))
            busy = unsettled() > 0
            worker.kill()
            killed_mid_dispatch += int(busy)
        # and then one runs to the end,
        last = Worker(spawner, url, tmp_path, "--dispatch", "--batch", str(batch), "--lease", "1")
        _wait_until(lambda: unsettled() == 0, 300, "every ledger row to settle")
        last.terminate()

        # Then every message was delivered and every ledger row is terminal (sent),
        with ctx.transaction(write=False) as session:
            statuses = dict(
                session.execute(
                    sa.select(OutboxMessage.status, sa.func.count()).group_by(OutboxMessage.status)
                ).all()
            )
        assert statuses == {OutboxStatus.SENT: messages}, f"seed={seed}"
        records = receiver.records()
        receipts = Counter(key for key, _, status in records if status == 200)
        assert len(receipts) == messages and all(k.startswith("run-1:") for k in receipts)
        # duplicates happened only in the crash window: at most one batch in flight per kill,
        duplicates = sum(n - 1 for n in receipts.values())
        assert killed_mid_dispatch >= 20, f"seed={seed}: only {killed_mid_dispatch} kills hit a dispatch"
        assert duplicates <= kills * batch, f"seed={seed}: {duplicates} duplicates for {kills} kills"
        # and every repeated delivery was flagged possible_duplicate.
        seen: set[str] = set()
        for key, dup, status in records:
            if status != 200:
                continue
            if key in seen:
                assert dup, f"seed={seed}: second delivery of {key} not flagged"
            seen.add(key)
        print(f"kill -9 x{kills} (batch {batch}): {duplicates} duplicate deliveries, seed {seed}")
    finally:
        receiver.stop()
        ctx.close()


# -- several workers on PostgreSQL ---------------------------------------------------------------


def _bulk_jobs(ctx: AppContext, n: int, kind: str = "test.rel.record") -> None:
    now = ctx.clock.now()
    rows = [
        {
            "id": new_id(),
            "kind": kind,
            "payload": {"i": i},
            "status": JobStatus.QUEUED,
            "attempt": 0,
            "max_attempts": 5,
            "run_at": now,
            "cancel_requested": False,
            "created_at": now,
        }
        for i in range(n)
    ]
    with ctx.transaction() as session:
        session.execute(sa.insert(Job), rows)


def test_four_worker_processes_on_postgres__20000_jobs__each_completed_exactly_once(
    tmp_path: Path, spawner: Spawner, pg_url: str
) -> None:
    # Given 20,000 jobs whose effect commits together with their completion,
    ctx = _context(pg_url, tmp_path)
    n = 20_000
    _bulk_jobs(ctx, n)

    def finished() -> int:
        with ctx.transaction(write=False) as session:
            return int(
                session.scalar(sa.select(sa.func.count()).where(Job.status == JobStatus.SUCCEEDED)) or 0
            )

    # When four worker processes run them (and one is killed -9 twice midway and replaced),
    workers = [
        Worker(spawner, pg_url, tmp_path, "--jobs", "2", "--lease", "2", "--prefetch", "8") for _ in range(4)
    ]
    try:
        for threshold in (n // 4, n // 2):
            _wait_until(lambda t=threshold: finished() >= t, 180, f"{threshold} jobs done")
            workers[0].kill()
            workers[0] = Worker(spawner, pg_url, tmp_path, "--jobs", "2", "--lease", "2", "--prefetch", "8")
        _wait_until(lambda: finished() == n, 300, "all jobs done")
    finally:
        for w in workers:
            if w.alive():
                w.terminate()
    # Then each job succeeded once, and its effect exists exactly once.
    with ctx.transaction(write=False) as session:
        effects = session.execute(sa.text("SELECT count(*), count(DISTINCT job_id) FROM rel_effects")).one()
        per_worker = session.execute(sa.text("SELECT count(DISTINCT worker) FROM rel_effects")).scalar()
        statuses = dict(session.execute(sa.select(Job.status, sa.func.count()).group_by(Job.status)).all())
    assert statuses == {JobStatus.SUCCEEDED: n}
    assert tuple(effects) == (n, n)
    assert per_worker is not None and per_worker >= 4
    ctx.close()


# -- a worker paused past its lease ----------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_sigstop_past_lease__stale_worker_cannot_complete_after_sigcont(
    tmp_path: Path, spawner: Spawner, backend: str, request: pytest.FixtureRequest
) -> None:
    url = _db_url(backend, tmp_path, request)
    ctx = _context(url, tmp_path)
    with ctx.transaction() as session:
        from overture.runtime.jobs import enqueue_job

        job_id = enqueue_job(session, "test.rel.slow", {})
    # Given worker A running the job, frozen with SIGSTOP until its lease has expired,
    a = Worker(spawner, url, tmp_path, "--jobs", "1", "--lease", "1")
    a.wait_for(f"STARTED {job_id} 1", 20)
    os.kill(a.pid, signal.SIGSTOP)
    try:
        time.sleep(1.5)
        # When worker B reclaims and completes it,
        b = Worker(spawner, url, tmp_path, "--jobs", "1", "--lease", "1")
        b.wait_for(f"DONE {job_id} 2", 20)
        b.terminate()
    finally:
        os.kill(a.pid, signal.SIGCONT)
    # Then A, resumed, cannot complete its stale attempt: its fenced transaction is refused.
    lost = f"job {job_id} attempt 1 lost its lease"
    _wait_until(lambda: lost in a.stderr_path.read_text(), 10, "worker A to find its lease lost")
    a.terminate()
    assert f"DONE {job_id} 1" not in a.lines
    with ctx.transaction(write=False) as session:
        job = session.get_one(Job, job_id)
        effects = session.execute(
            sa.text("SELECT attempt FROM rel_effects WHERE job_id = :j"), {"j": job_id}
        ).all()
    assert job.status == JobStatus.SUCCEEDED and job.attempt == 2
    assert [e[0] for e in effects] == [2]
    ctx.close()
