"""A worker process for the reliability tests: the real Runtime with short leases, plus two test
job kinds whose effects land in `rel_effects` atomically with their completion.

`python -m tests.runtime.worker_proc --db URL --home DIR [--jobs N] [--dispatch] ...` prints READY
once its threads run, and stops gracefully on SIGTERM."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import os
import signal
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from overture.config import Settings
from overture.db.context import AppContext
from overture.runtime.jobs import JobContext, job_handler
from overture.runtime.worker import Runtime

EFFECTS_DDL = "CREATE TABLE IF NOT EXISTS rel_effects (job_id VARCHAR(36), attempt INT, worker VARCHAR(40))"
SLOW_SECONDS = float(os.environ.get("REL_SLOW_SECONDS", "1.5"))


def _effect(job: JobContext) -> None:
    with job.transaction(complete=True) as session:
        session.execute(
            sa.text("INSERT INTO rel_effects (job_id, attempt, worker) VALUES (:j, :a, :w)"),
            {"j": job.id, "a": job.attempt, "w": str(os.getpid())},
        )


@job_handler("test.rel.record")
def record(ctx: AppContext, job: JobContext) -> None:
    _effect(job)


@job_handler("test.rel.slow")
def slow(ctx: AppContext, job: JobContext) -> None:
    print(f"STARTED {job.id} {job.attempt}", flush=True)
    time.sleep(SLOW_SECONDS)
    _effect(job)
    print(f"DONE {job.id} {job.attempt}", flush=True)


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when the spawner goes (a test that failed or was killed
    never leaves workers behind)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def spawner() -> None:
    """Fork workers on request, so each starts in milliseconds with every module already imported
    (the kill -9 test restarts a worker twenty times). Reads one JSON argument list per line on
    stdin, answers `PID <n>`; the child's stdout/stderr go to the files named by --out/--err."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    _die_with_parent()  # and the spawner goes with the test process
    for line in sys.stdin:
        argv = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _die_with_parent()
            out = os.open(argv[argv.index("--out") + 1], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            err = os.open(argv[argv.index("--err") + 1], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.dup2(out, 1)
            os.dup2(err, 2)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            try:
                main(argv)
            finally:
                os._exit(0)
        print(f"PID {pid}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--home", required=True)
    parser.add_argument("--jobs", type=int, default=0, help="job threads (0: none)")
    parser.add_argument("--dispatch", action="store_true")
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--prefetch", type=int, default=1)
    parser.add_argument("--out")
    parser.add_argument("--err")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    settings = Settings(
        home=Path(args.home), database_url=args.db, egress_allow=["127.0.0.1/32"], run_workers=False
    )
    ctx = AppContext.from_settings(settings)
    lease = timedelta(seconds=args.lease)
    runtime = Runtime(
        ctx,
        concurrency=max(1, args.jobs),
        run_scheduler=False,
        run_jobs=args.jobs > 0,
        run_dispatcher=args.dispatch,
        poll_interval=0.05,
        job_lease=lease,
        outbox_lease=lease,
        batch_size=args.batch,
        dispatch_limit=args.limit,
        prefetch=args.prefetch,
        kinds=["test.rel.record", "test.rel.slow"],
        name=f"w{os.getpid()}",
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    runtime.start()
    print("READY", flush=True)
    stop.wait()
    clean = runtime.stop(timeout=10)
    ctx.close()
    print("STOPPED" if clean else "STOPPED-UNCLEAN", flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--spawner"]:
        spawner()
    else:
        main()
