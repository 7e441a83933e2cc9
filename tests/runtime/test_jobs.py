"""Job queue: enqueue, claim, leases, fencing, retries with backoff, dead jobs, cancellation."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from overture.clock import FrozenClock
from overture.db.context import AppContext
from overture.runtime.job_runs import claim, execute
from overture.runtime.jobs import (
    DEFAULT_LEASE,
    JobContext,
    JobInterrupted,
    LeaseLost,
    Permanent,
    Retry,
    backoff_seconds,
    cancel_job,
    drain,
    enqueue_job,
    job_handler,
)
from overture.runtime.models import Job, JobStatus

CALLS: list[tuple[str, int, dict[str, Any]]] = []
BEHAVIOUR: dict[str, Any] = {}


@job_handler("test.jobs.record")
def _record(ctx: AppContext, job: JobContext) -> None:
    CALLS.append((job.id, job.attempt, job.payload))
    action = BEHAVIOUR.get(job.id)
    if action is not None:
        raise action


@job_handler("test.jobs.atomic")
def _atomic(ctx: AppContext, job: JobContext) -> None:
    with job.transaction(complete=True) as session:
        session.execute(
            sa.text("INSERT INTO test_job_effects (job_id, attempt) VALUES (:j, :a)"),
            {"j": job.id, "a": job.attempt},
        )


EFFECTS_DDL = "CREATE TABLE IF NOT EXISTS test_job_effects (job_id VARCHAR(36), attempt INT)"
KINDS = ["test.jobs.record", "test.jobs.atomic"]


@pytest.fixture(autouse=True)
def _reset(ctx: AppContext, frozen_clock: FrozenClock) -> Iterator[None]:
    CALLS.clear()
    BEHAVIOUR.clear()
    with ctx.transaction() as session:
        session.execute(
            sa.text("CREATE TABLE IF NOT EXISTS test_job_effects (job_id VARCHAR(36), attempt INT)")
        )
    yield
    # Tests share one database: leave no job of ours for the next test to find.
    with ctx.transaction() as session:
        session.execute(
            sa.update(Job)
            .where(Job.kind.like("test.jobs.%"), Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
            .values(status=JobStatus.CANCELLED)
        )


def _enqueue(ctx: AppContext, kind: str = "test.jobs.record", **kwargs: Any) -> str:
    with ctx.transaction() as session:
        return enqueue_job(session, kind, kwargs.pop("payload", {"n": 1}), **kwargs)


def _job(ctx: AppContext, job_id: str) -> Job:
    with ctx.transaction(write=False) as session:
        return session.get_one(Job, job_id)


def test_enqueue_then_drain__runs_handler_once__succeeded(ctx: AppContext) -> None:
    job_id = _enqueue(ctx, payload={"hello": "world"})
    assert drain(ctx, kinds=KINDS) == 1
    assert [(job_id, 1, {"hello": "world"})] == CALLS
    job = _job(ctx, job_id)
    assert job.status == JobStatus.SUCCEEDED and job.attempt == 1 and job.locked_until is None
    assert drain(ctx, kinds=KINDS) == 0  # a finished job never runs again


def test_enqueue__same_unique_key__returns_existing_job(ctx: AppContext) -> None:
    first = _enqueue(ctx, unique_key="k-dup-1")
    second = _enqueue(ctx, unique_key="k-dup-1")
    assert first == second
    drain(ctx, kinds=KINDS)
    assert _enqueue(ctx, unique_key="k-dup-1") == first  # still held after the job finished
    assert len(CALLS) == 1


def test_enqueue__rolled_back__job_does_not_exist(ctx: AppContext) -> None:
    with pytest.raises(RuntimeError), ctx.transaction() as session:
        job_id = enqueue_job(session, "test.jobs.record", {})
        raise RuntimeError("boom")
    with ctx.transaction(write=False) as session:
        assert session.get(Job, job_id) is None


def test_enqueue__run_at_future__not_due_until_then(ctx: AppContext, frozen_clock: FrozenClock) -> None:
    job_id = _enqueue(ctx, run_at=frozen_clock.now() + timedelta(minutes=5))
    assert drain(ctx, kinds=KINDS) == 0
    frozen_clock.advance(minutes=5)
    assert drain(ctx, kinds=KINDS) == 1 and CALLS[0][0] == job_id


def test_failure__retried_with_backoff__then_dead_with_error_kept(
    ctx: AppContext, frozen_clock: FrozenClock
) -> None:
    job_id = _enqueue(ctx, max_attempts=3)
    BEHAVIOUR[job_id] = ValueError("provider exploded")
    assert drain(ctx, kinds=KINDS) == 1
    job = _job(ctx, job_id)
    assert job.status == JobStatus.QUEUED and job.attempt == 1
    assert "provider exploded" in (job.last_error or "")
    delay = (job.run_at - frozen_clock.now()).total_seconds()
    assert 1.0 <= delay <= 2.0  # base 2s, jitter in [0.5, 1)
    assert drain(ctx, kinds=KINDS) == 0  # not due yet
    frozen_clock.advance(seconds=2)
    drain(ctx, kinds=KINDS)
    job = _job(ctx, job_id)
    assert job.status == JobStatus.QUEUED and job.attempt == 2
    assert 2.0 <= (job.run_at - frozen_clock.now()).total_seconds() <= 4.0
    frozen_clock.advance(seconds=4)
    drain(ctx, kinds=KINDS)
    job = _job(ctx, job_id)
    assert job.status == JobStatus.DEAD and job.attempt == 3 and "provider exploded" in (job.last_error or "")
    frozen_clock.advance(hours=1)
    assert drain(ctx, kinds=KINDS) == 0


def test_backoff__grows_exponentially__capped() -> None:
    assert all(1 <= backoff_seconds(1) < 2 for _ in range(50))
    assert all(8 <= backoff_seconds(4) < 16 for _ in range(50))
    assert backoff_seconds(60) < 3600


def test_retry_exception__delay_honoured(ctx: AppContext, frozen_clock: FrozenClock) -> None:
    job_id = _enqueue(ctx)
    BEHAVIOUR[job_id] = Retry("later", after=300)
    drain(ctx, kinds=KINDS)
    job = _job(ctx, job_id)
    assert job.status == JobStatus.QUEUED and job.run_at == frozen_clock.now() + timedelta(seconds=300)


def test_permanent_exception__dead_at_once(ctx: AppContext) -> None:
    job_id = _enqueue(ctx)
    BEHAVIOUR[job_id] = Permanent("bad config")
    drain(ctx, kinds=KINDS)
    job = _job(ctx, job_id)
    assert job.status == JobStatus.DEAD and job.attempt == 1 and "bad config" in (job.last_error or "")


def test_unknown_kind__fails_then_dead__error_names_kind(ctx: AppContext, frozen_clock: FrozenClock) -> None:
    job_id = _enqueue(ctx, kind="test.jobs.nobody", max_attempts=1)
    drain(ctx, kinds=["test.jobs.nobody"])
    job = _job(ctx, job_id)
    assert job.status == JobStatus.DEAD and "test.jobs.nobody" in (job.last_error or "")


def test_expired_lease__reclaimed_with_next_attempt__stale_attempt_cannot_finish(
    ctx: AppContext, frozen_clock: FrozenClock
) -> None:
    job_id = _enqueue(ctx, kind="test.jobs.atomic")
    first = claim(ctx, "worker-a", kinds=KINDS)
    assert first is not None and first.id == job_id and first.attempt == 1
    assert claim(ctx, "worker-b", kinds=KINDS) is None  # held by worker-a
    frozen_clock.advance(DEFAULT_LEASE + timedelta(seconds=1))
    second = claim(ctx, "worker-b", kinds=KINDS)
    assert second is not None and second.id == job_id and second.attempt == 2
    # worker-a wakes up: neither its writes nor its completion can land.
    assert execute(ctx, first) == "lost"
    assert execute(ctx, second) == JobStatus.SUCCEEDED
    with ctx.transaction(write=False) as session:
        rows = session.execute(
            sa.text("SELECT attempt FROM test_job_effects WHERE job_id = :j"), {"j": job_id}
        ).all()
    assert [r[0] for r in rows] == [2]
    frozen_clock.advance(days=1)
    assert claim(ctx, "worker-c", kinds=KINDS) is None  # a finished job is never reclaimed


def test_expired_lease_on_last_attempt__dead(ctx: AppContext, frozen_clock: FrozenClock) -> None:
    job_id = _enqueue(ctx, max_attempts=1)
    assert claim(ctx, "worker-a", kinds=KINDS) is not None
    frozen_clock.advance(DEFAULT_LEASE + timedelta(seconds=1))
    assert claim(ctx, "worker-b", kinds=KINDS) is None
    job = _job(ctx, job_id)
    assert job.status == JobStatus.DEAD and "lease expired" in (job.last_error or "")


def test_heartbeat__extends_lease__lost_after_reclaim(ctx: AppContext, frozen_clock: FrozenClock) -> None:
    _enqueue(ctx)
    claimed = claim(ctx, "worker-a", kinds=KINDS)
    assert claimed is not None
    job = JobContext(claimed.id, claimed.kind, claimed.payload, claimed.attempt, None, 5, _ctx=ctx)
    frozen_clock.advance(seconds=50)
    job.heartbeat()
    frozen_clock.advance(seconds=50)  # 100s after the claim, 50s after the heartbeat: still ours
    assert claim(ctx, "worker-b", kinds=KINDS) is None
    frozen_clock.advance(seconds=11)
    assert claim(ctx, "worker-b", kinds=KINDS) is not None
    with pytest.raises(LeaseLost):
        job.heartbeat()
    with pytest.raises(LeaseLost):
        job.check()


def test_cancel__queued_job__never_runs(ctx: AppContext) -> None:
    job_id = _enqueue(ctx)
    with ctx.transaction() as session:
        assert cancel_job(session, job_id)
    assert drain(ctx, kinds=KINDS) == 0
    assert _job(ctx, job_id).status == JobStatus.CANCELLED


def test_cancel__running_job__check_stops_it(ctx: AppContext) -> None:
    job_id = _enqueue(ctx)

    def cancel_then_check(c: AppContext, job: JobContext) -> None:
        with c.transaction() as session:
            cancel_job(session, job.id)
        job.check()
        raise AssertionError("check() should have raised")

    BEHAVIOUR.clear()
    claimed = claim(ctx, "w", kinds=KINDS)
    assert claimed is not None
    from overture.runtime import job_runs as jobs_module

    original = jobs_module._HANDLERS["test.jobs.record"]
    jobs_module._HANDLERS["test.jobs.record"] = cancel_then_check
    try:
        assert execute(ctx, claimed) == JobStatus.CANCELLED
    finally:
        jobs_module._HANDLERS["test.jobs.record"] = original
    assert _job(ctx, job_id).status == JobStatus.CANCELLED


def test_interrupted__back_to_queue__attempt_budget_kept(ctx: AppContext) -> None:
    job_id = _enqueue(ctx, max_attempts=1)
    BEHAVIOUR[job_id] = JobInterrupted("shutdown")
    drain(ctx, kinds=KINDS, max_jobs=1)
    job = _job(ctx, job_id)
    assert job.status == JobStatus.QUEUED and job.max_attempts == 2 and job.attempt == 1
    BEHAVIOUR.clear()
    assert drain(ctx, kinds=KINDS) == 1
    assert _job(ctx, job_id).status == JobStatus.SUCCEEDED


def test_atomic_transaction__effects_and_completion_commit_together(ctx: AppContext) -> None:
    job_id = _enqueue(ctx, kind="test.jobs.atomic")
    drain(ctx, kinds=KINDS)
    assert _job(ctx, job_id).status == JobStatus.SUCCEEDED
    with ctx.transaction(write=False) as session:
        n = session.execute(
            sa.text("SELECT count(*) FROM test_job_effects WHERE job_id = :j"), {"j": job_id}
        ).scalar()
    assert n == 1


def test_drain__raise_errors__records_then_raises(ctx: AppContext) -> None:
    job_id = _enqueue(ctx)
    BEHAVIOUR[job_id] = KeyError("missing")
    with pytest.raises(KeyError):
        drain(ctx, kinds=KINDS, raise_errors=True)
    assert _job(ctx, job_id).status == JobStatus.QUEUED


def test_concurrent_claimers__each_job_claimed_once(ctx: AppContext) -> None:
    ids = {_enqueue(ctx) for _ in range(60)}
    seen: list[str] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while (c := claim(ctx, name, kinds=KINDS)) is not None:
            with lock:
                seen.append(c.id)
            execute(ctx, c)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(seen) == sorted(ids)
