"""`overture import` and `overture demo` as a user runs them (real processes), and the first-run hook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from overture.config import Settings
from overture.data.source import EVENTS_TABLE
from overture.db import migrate
from overture.db.context import AppContext

OVERTURE = str(Path(sys.executable).parent / "overture")


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVERTURE_")}
    env["OVERTURE_HOME"] = str(home)
    return env


def _run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OVERTURE, *args], env=_env(home), capture_output=True, text=True, timeout=120)


def _json(home: Path, *args: str) -> dict[str, Any]:
    out = _run(home, *args, "--json")
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def _query(home: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(home / "data.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    _json(tmp_path, "init")
    return tmp_path


def test_import_csv__creates_model_then_upserts_and_grows(home: Path, tmp_path: Path) -> None:
    first = tmp_path / "people.csv"
    first.write_text(
        "id,plan,ltv,signup\n1,free,3.5,2024-01-01T00:00:00Z\n2,,,\n3,pro,10,2024-02-01 10:00:00\n"
    )
    out = _json(home, "import", str(first), "--model", "people", "--primary-key", "id")
    assert (out["rows"], out["inserted"], out["updated"], out["created"]) == (3, 3, 0, True)
    table = out["table"]
    # An empty cell is null; types are inferred.
    assert _query(home, f"SELECT plan, ltv, signup FROM {table} WHERE id = 2") == [(None, None, None)]
    kinds = dict(
        _query(
            home,
            f"SELECT column_name, data_type FROM information_schema.columns WHERE table_name = '{table}'",
        )
    )
    assert (
        kinds["id"] == "BIGINT" and kinds["ltv"] == "DOUBLE" and kinds["signup"] == "TIMESTAMP WITH TIME ZONE"
    )

    second = tmp_path / "more.csv"
    second.write_text("id,plan,extra\n3,gold,x\n4,pro,y\n")
    out = _json(home, "import", str(second), "--model", "people")
    assert (out["inserted"], out["updated"], out["columns_added"]) == (1, 1, ["extra"])
    assert _query(home, f"SELECT id, plan, ltv, extra FROM {table} ORDER BY id") == [
        (1, "free", 3.5, None),
        (2, None, None, None),
        (3, "gold", 10.0, "x"),
        (4, "pro", None, "y"),
    ]


def test_import_parquet__types_kept(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    con = duckdb.connect()
    rows = "SELECT i AS uid, i * 1.5 AS score, [i, i] AS pair FROM range(5) t(i)"
    con.execute(f"COPY ({rows}) TO '{path}' (FORMAT parquet)")
    con.close()
    out = _json(home, "import", str(path), "--model", "scores", "--primary-key", "uid")
    assert out["rows"] == 5
    assert _query(home, f"SELECT sum(score), max(CAST(pair AS VARCHAR)) FROM {out['table']}") == [
        (15.0, "[4,4]")
    ]


def test_import__bad_input__exit_2_with_reason(home: Path, tmp_path: Path) -> None:
    dup = tmp_path / "dup.csv"
    dup.write_text("id,x\n1,a\n1,b\n")
    out = _run(home, "import", str(dup), "--model", "d", "--primary-key", "id")
    assert out.returncode == 2 and "repeats" in out.stderr
    out = _run(home, "import", str(dup), "--model", "d")
    assert out.returncode == 2 and "--primary-key" in out.stderr
    out = _run(home, "import", str(tmp_path / "missing.csv"), "--model", "d", "--primary-key", "id")
    assert out.returncode == 2 and "does not exist" in out.stderr


def test_import__data_file_held_by_another_process__clear_error(home: Path, tmp_path: Path) -> None:
    csv = tmp_path / "a.csv"
    csv.write_text("id\n1\n")
    _json(home, "import", str(csv), "--model", "a", "--primary-key", "id")  # the data file exists now
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb,time; c=duckdb.connect({str(home / 'data.duckdb')!r}); "
         "print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        out = _run(home, "import", str(csv), "--model", "a")
        assert out.returncode == 2
        assert "in use by another process" in out.stderr and "records" in out.stderr
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_demo__loads_customers_and_events__second_run_adds_nothing(home: Path) -> None:
    first = _json(home, "demo", "--rows", "3000")
    assert first["customers_added"] == 3000 and first["events_added"] > 3000
    table = first["table"]
    plans = dict(_query(home, f"SELECT plan, count(*) FROM {table} GROUP BY plan"))
    assert set(plans) == {"free", "basic", "pro", "enterprise"} and plans["free"] > plans["enterprise"]
    events = dict(_query(home, f"SELECT event, count(*) FROM {EVENTS_TABLE} GROUP BY event"))
    assert set(events) == {"app_open", "paywall_view", "purchase", "transaction_complete"}
    assert events["purchase"] == events["transaction_complete"]
    revenue = _query(home, f"SELECT count(*) FROM {EVENTS_TABLE} WHERE event = 'transaction_complete' "
                     "AND CAST(properties->>'revenue' AS DOUBLE) > 0")  # fmt: skip
    assert revenue == [(events["transaction_complete"],)]
    again = _json(home, "demo", "--rows", "3000")
    assert (again["customers_added"], again["events_added"], again["customers_total"]) == (0, 0, 3000)
    more = _json(home, "demo", "--rows", "3500")
    assert (more["customers_added"], more["customers_total"]) == (500, 3500)


def test_first_run__loads_demo_data_into_new_workspace(tmp_path: Path) -> None:
    from overture import cli
    from overture.data.service import get_model_by_name

    settings = Settings(home=tmp_path, run_workers=False)
    ctx = AppContext.from_settings(settings)
    migrate.upgrade(settings.resolved_database_url, ctx.engine)
    started = time.monotonic()
    try:
        cli._first_run(ctx)
        creds = json.loads((tmp_path / "credentials.json").read_text())
        with ctx.transaction(write=False, workspace_id=creds["workspace_id"]) as session:
            model = get_model_by_name(session, "customers")
            assert model is not None
            table = model.table_name
    finally:
        ctx.close()
    assert time.monotonic() - started < 60
    assert _query(tmp_path, f"SELECT count(*) FROM {table}") == [(100_000,)]
