"""A worker killed with SIGKILL in the middle of a run: no half file under the final name, the run is
not completed, and once the lease runs out another worker finishes it with the same bytes."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from overture.clock import FrozenClock
from overture.data.source import get_source
from overture.delivery.adapters.file import files_root
from overture.runtime import jobs
from tests.batch.conftest import Api, create_customers

WORKER = textwrap.dedent(
    """
    import sys, time
    from overture.api.tasks import import_all
    from overture.config import Settings
    from overture.db.context import AppContext
    from overture.runtime import jobs

    home, db_url, data_url = sys.argv[1:4]
    ctx = AppContext.from_settings(Settings(home=home, database_url=db_url, data_url=data_url))
    import_all()
    print("ready", flush=True)
    while True:
        jobs.drain(ctx, kinds=["batch.run"])
        time.sleep(0.02)
    """
)


@pytest.mark.slow
def test_worker_killed_with_sigkill_mid_run__no_half_file__resumed_with_the_same_bytes(api: Api) -> None:
    table = create_customers(api.ctx, 300_000)
    model = api.model(table)
    segment = api.segment(model)
    ch = api.channel("files")
    offers = [
        api.offer(
            f"o{k}",
            channels=[ch],
            propensity={
                "type": "logistic",
                "intercept": -1 + k / 4,
                "weights": {"ltv": 0.01 * k, "churn_score": 1 - k / 5},
            },
        )
        for k in range(5)
    ]
    flow = api.flow(model, offerIds=offers, ranking="score", maxOffersPerCustomer=2)
    campaign = api.campaign(
        flow,
        segment,
        volumeConstraints={"maxPerOffer": 100_000},
        fileOutput={"columns": ["customer_id", "offer_id", "score", "rank"]},
    )
    run = api.post(f"/batch-campaigns/{campaign['id']}/runs")
    scratch = api.ctx.settings.home / "tmp" / f"batch-{run['id']}.csv.part"
    final = files_root(api.ctx) / "batch" / api.ws.id / campaign["id"] / f"{run['id']}.csv"
    get_source(api.ctx).engine.dispose()  # DuckDB admits one process at a time: hand it to the worker
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
        deadline = time.monotonic() + 180
        while not scratch.exists():  # the engine is writing the file
            assert worker.poll() is None, "worker exited early"
            assert time.monotonic() < deadline, "the worker never started writing"
            time.sleep(0.005)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    during = api.get(f"/batch-campaigns/{campaign['id']}/runs/{run['id']}")
    assert during["status"] == "running" and during["file"] is None
    api.get(f"/batch-campaigns/{campaign['id']}/runs/{run['id']}/file", expect=404)
    half_written = final.read_bytes() if final.exists() else None  # only a whole file is ever renamed in

    previous = api.ctx.clock
    api.ctx.clock = FrozenClock(previous.now() + jobs.DEFAULT_LEASE * 2)
    try:
        jobs.drain(api.ctx, kinds=["batch.run"])
    finally:
        api.ctx.clock = previous
    done = api.get(f"/batch-campaigns/{campaign['id']}/runs/{run['id']}")
    assert done["status"] == "completed", done
    body = api.file(campaign["id"], run["id"])
    assert hashlib.sha256(body).hexdigest() == done["file"]["sha256"]
    assert half_written is None or half_written == body
    assert not scratch.exists()
    reference = api.run(campaign["id"])  # an uninterrupted run of the same campaign
    assert reference["file"]["sha256"] == done["file"]["sha256"]
