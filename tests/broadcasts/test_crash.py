"""A worker killed with SIGKILL in the middle of a 10,000-recipient send: after its leases expire
the send resumes elsewhere, the counts add up, and nobody gets a message twice unflagged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import defaultdict

import pytest
import sqlalchemy as sa

from overture.broadcasts.execution import derived_counts
from overture.clock import FrozenClock
from overture.data.source import get_source
from overture.runtime import jobs, outbox
from tests.broadcasts.conftest import Api, Receiver, customers

WORKER = textwrap.dedent(
    """
    import sys, time
    from overture.api.tasks import import_all
    from overture.config import Settings
    from overture.db.context import AppContext
    from overture.broadcasts import execution
    from overture.runtime import jobs, outbox

    execution.CHUNK = 500
    home, db_url, data_url = sys.argv[1:4]
    settings = Settings(home=home, database_url=db_url, data_url=data_url, egress_allow=["127.0.0.1/32"])
    ctx = AppContext.from_settings(settings)
    import_all()
    print("ready", flush=True)
    while True:
        jobs.drain(ctx, kinds=["broadcasts.run", "broadcasts.reconcile"])
        outbox.dispatch_once(ctx, limit=300, batch_size=50)
    """
)


@pytest.mark.slow
def test_worker_killed_mid_send__resumed__counts_add_up_and_no_unflagged_duplicate(
    api: Api, receiver: Receiver
) -> None:
    # Given a 10,000-recipient webhook broadcast started now, run by a separate worker process
    model = api.model(customers(api.ctx, 10_000))
    segment = api.segment(model)
    template = api.template("sms", body="Hi {{ first_name }}")
    hook = api.destination("webhook", {"url": receiver.url + "/sms"})
    b = api.broadcast(
        channel="sms",
        templateId=template,
        destinationId=hook,
        audience={"included": [segment]},
        addressField="email",
    )
    api.post(f"/broadcasts/{b['id']}/reach")
    execution = api.post(f"/broadcasts/{b['id']}/send-now", expect=202)
    get_source(api.ctx).engine.dispose()  # DuckDB admits one process at a time: hand it over
    settings = api.ctx.settings
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            WORKER,
            str(settings.home),
            settings.resolved_database_url,
            settings.resolved_data_url,
        ],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        # When it is killed (SIGKILL) while messages are on the wire
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and len(receiver.requests) < 3000:
            assert worker.poll() is None, "worker exited early"
            time.sleep(0.01)
        assert len(receiver.requests) >= 3000, "the worker never got going"
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert len({r.headers["idempotency-key"] for r in receiver.requests}) < 10_000

    # Then, once its leases expire, this process resumes: the job, the ledger and the reconcile
    previous = api.ctx.clock
    clock = FrozenClock(previous.now() + jobs.DEFAULT_LEASE * 2 + outbox.LEASE)
    api.ctx.clock = clock
    try:
        api.finish(clock)
    finally:
        api.ctx.clock = previous
    done = api.get(f"/{'broadcasts'}/{b['id']}/executions/{execution['id']}")
    counts = done["counts"]
    assert done["status"] == "completed", done
    assert counts["scheduled"] == counts["hydrated"] == counts["composed"] == counts["injected"] == 10_000
    assert counts["sent"] + counts["failed"] == counts["injected"] and counts["sent"] == 10_000
    with api.ctx.transaction() as session:
        derived = derived_counts(session, execution["id"])
    assert all(derived[k] == counts[k] for k in derived)
    # Everyone got it; a second delivery of a message happened only as a flagged resend
    seen: dict[str, list[bool]] = defaultdict(list)
    for r in receiver.requests:
        seen[r.headers["idempotency-key"]].append(r.headers.get("x-overture-possible-duplicate") == "true")
    assert len(seen) == 10_000
    for key, flags in seen.items():
        assert all(flags[1:]), f"{key} was delivered {len(flags)} times, a resend unflagged"
    status = api.public(b["id"], "status").json()["data"]
    assert status["execution"]["state"] == "completed"
    assert status["execution"]["lastExecution"]["counts"]["sent"] == 10_000


def test_crash_mid_compose__resumed__nothing_lost_nothing_owed_twice(
    api: Api, receiver: Receiver, frozen_clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a send whose run dies after its 2nd chunk of 40 committed
    from overture.broadcasts import execution as pipeline

    monkeypatch.setattr(pipeline, "CHUNK", 40)
    model = api.model(customers(api.ctx, 150))
    template = api.template("push", body="Hi {{ first_name }}")
    hook = api.destination("webhook", {"url": receiver.url + "/push"})
    b = api.broadcast(
        channel="push",
        templateId=template,
        destinationId=hook,
        audience={"included": [api.segment(model)]},
        addressField="customer_id",
    )
    api.post(f"/broadcasts/{b['id']}/reach")
    execution = api.post(f"/broadcasts/{b['id']}/send-now", expect=202)
    real = pipeline.compose_chunk
    calls = []

    def dying(*args: object) -> bool:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("worker killed")
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "compose_chunk", dying)
    jobs.drain(api.ctx)
    mid = api.get(f"/broadcasts/{b['id']}/executions/{execution['id']}")
    assert mid["status"] == "running" and mid["counts"]["injected"] == 80, (mid["phase"], mid["counts"])
    # When the retry comes round
    monkeypatch.setattr(pipeline, "compose_chunk", real)
    frozen_clock.advance(seconds=60)
    api.finish(frozen_clock)
    done = api.get(f"/broadcasts/{b['id']}/executions/{execution['id']}")
    assert done["counts"]["injected"] == done["counts"]["sent"] == 150 and done["status"] == "completed"
    with api.ctx.transaction() as session:
        keys = list(
            session.scalars(
                sa.text("SELECT idempotency_key FROM outbox_messages WHERE source_id = :e"),
                {"e": execution["id"]},
            )
        )
    assert len(keys) == len(set(keys)) == 150
    assert len(receiver.requests) == 150
