"""Outbox throughput: messages owed in the ledger, dispatched to a local webhook receiver through the
real dispatcher (claim a batch, send through the webhook destination, record every outcome), beside
a bare httpx loop posting the same messages in the same batches with the same concurrency.

    .venv/bin/python bench/outbox.py [--messages 100000] [--batch 100] [--database-url URL]

The receiver is a raw-asyncio HTTP/1.1 server in its own process (tests/runtime/receiver.py), so it
never competes with the process under test for the GIL. The bare loop sends each batch with a
thread pool of the webhook adapter's size (16) over one keep-alive httpx.Client, with the same
headers and body; it runs before and after the outbox run and the ratio uses their mean (absolute
rates drift on these machines). The webhook destination's `send_batch` is also timed alone (no
ledger), which splits the gap between the ledger and the adapter (egress guard, signing, bounded
reads). Enqueueing (one set-based insert) is timed apart. Target (DESIGN.md section 7): the outbox
at least 80% of the bare loop's rate.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import sqlalchemy as sa

from overture.auth import service as auth_service
from overture.config import Settings
from overture.db import migrate
from overture.db.context import AppContext
from overture.delivery.adapters.webhook import CONCURRENCY
from overture.delivery.messages import Message
from overture.delivery.models import Destination
from overture.delivery.service import send_batch
from overture.runtime.models import OutboxMessage, OutboxStatus
from overture.runtime.outbox import OutboxItem, dispatch_once, enqueue

ROOT = Path(__file__).resolve().parents[1]


def payload(i: int) -> dict[str, object]:
    return {"member_id": f"m-{i}", "step": "welcome-email", "attributes": {"plan": "pro", "n": i}}


def bare_loop(url: str, n: int, batch: int, tag: str) -> float:
    """Messages/s posting the same bodies and headers, batch by batch, with the adapter's pool size."""
    client = httpx.Client(timeout=10.0)
    pool = ThreadPoolExecutor(max_workers=CONCURRENCY)

    def post(i: int) -> int:
        body = orjson.dumps(payload(i))
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": f"{tag}:{i}",
            "X-Overture-Attempt": "1",
        }
        return client.post(url, content=body, headers=headers).status_code

    started = time.perf_counter()
    for start in range(0, n, batch):
        statuses = list(pool.map(post, range(start, min(n, start + batch))))
        assert all(s == 200 for s in statuses)
    elapsed = time.perf_counter() - started
    pool.shutdown()
    client.close()
    return n / elapsed


def adapter_only(ctx: AppContext, destination: Destination, n: int, batch: int, tag: str) -> float:
    """Messages/s through the webhook destination's send_batch alone, no ledger: what the
    dispatcher could reach if the ledger cost nothing."""
    started = time.perf_counter()
    for start in range(0, n, batch):
        wire = [Message(f"{tag}:{i}", payload(i)) for i in range(start, min(n, start + batch))]
        assert all(o.status == "sent" for o in send_batch(ctx, destination, wire))
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file (embedded)")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))  # the receiver lives with the tests
    from tests.runtime.receiver import ReceiverProcess

    home = Path(tempfile.mkdtemp(prefix="overture-bench-outbox-"))
    settings = Settings(
        home=home, database_url=args.database_url, egress_allow=["127.0.0.1/32"], run_workers=False
    )
    ctx = AppContext.from_settings(settings)
    migrate.upgrade(settings.resolved_database_url, ctx.engine)
    receiver = ReceiverProcess(home / "received.log")
    try:
        with ctx.transaction() as session:
            ws, _, _ = auth_service.bootstrap_workspace(session, "bench")
            dest = Destination(workspace_id=ws.id, name="bench", type="webhook", config={"url": receiver.url})
            session.add(dest)
            session.flush()
            started = time.perf_counter()
            enqueue(
                session,
                (
                    OutboxItem(ws.id, dest.id, f"run-1:m{i}:s1", payload(i), "bench")
                    for i in range(args.messages)
                ),
            )
        enqueue_rate = args.messages / (time.perf_counter() - started)

        with ctx.transaction(write=False) as session:
            destination = session.get_one(Destination, dest.id)
            session.expunge(destination)
        bare_before = bare_loop(receiver.url, args.messages, args.batch, "bare-before")
        adapter = adapter_only(ctx, destination, args.messages, args.batch, "adapter")
        started = time.perf_counter()
        processed = 0
        while (n := dispatch_once(ctx, limit=10 * args.batch, batch_size=args.batch)) > 0:
            processed += n
        outbox_rate = processed / (time.perf_counter() - started)
        bare_after = bare_loop(receiver.url, args.messages, args.batch, "bare-after")

        with ctx.transaction(write=False) as session:
            sent = session.scalar(sa.select(sa.func.count()).where(OutboxMessage.status == OutboxStatus.SENT))
        assert processed == args.messages and sent == args.messages, (processed, sent)
        received = {
            key for key, _, status in receiver.records() if key.startswith("run-1:") and status == 200
        }
        assert len(received) == args.messages
    finally:
        receiver.stop()
        ctx.close()

    bare = statistics.mean([bare_before, bare_after])
    backend = ctx.engine.dialect.name
    print(f"outbox bench: {args.messages:,} messages, batches of {args.batch}, ledger on {backend}")
    print(f"  enqueue (set-based insert)     {enqueue_rate:12,.0f} msg/s")
    print(f"  bare httpx loop (before/after) {bare_before:12,.0f} / {bare_after:,.0f} msg/s")
    print(f"  webhook adapter alone, no ledger {adapter:10,.0f} msg/s")
    print(f"  outbox dispatch                {outbox_rate:12,.0f} msg/s")
    print(f"  ratio outbox / bare            {outbox_rate / bare:12.0%}   (target >= 80%)")
    print(f"  ratio outbox / adapter alone   {outbox_rate / adapter:12.0%}   (the ledger's own cost)")


if __name__ == "__main__":
    main()
