"""`overture import` never guesses silently (issue #14, item 5): a value that does not fit its column
names its row, column and value; no rounding; a new column forced to text by a few rows is refused
(or, with --allow-text-fallback, stored as text and reported); inferred types are printed."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from tests.cli.helpers import clean_env, run


@pytest.fixture
def home(tmp_path: Path) -> Path:
    assert run("init", "--json", cwd=tmp_path, env=clean_env(OVERTURE_HOME=str(tmp_path))).returncode == 0
    return tmp_path


def _import(home: Path, name: str, text: str, *args: str) -> tuple[int, str, str]:
    path = home / name
    path.write_text(text)
    out = run(
        "import", str(path), "--model", "people", *args, cwd=home, env=clean_env(OVERTURE_HOME=str(home))
    )
    return out.returncode, out.stdout, out.stderr


def _rows(home: Path, sql: str) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(home / "data.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_a_value_that_does_not_fit_names_row_column_and_value__and_nothing_is_rounded(home: Path) -> None:
    code, out, err = _import(
        home, "a.csv", "id,visits,ltv\n1,3,2.5\n2,4,1\n", "--primary-key", "id", "--json"
    )
    assert code == 0, err
    table = json.loads(out)["table"]
    assert json.loads(out)["column_types"] == {"id": "integer", "visits": "integer", "ltv": "number"}
    code, out, err = _import(home, "b.csv", "id,visits\n3,5\n4,1.5\n")
    assert code == 2
    assert err.strip() == (
        "error: file: row 2, column 'visits': '1.5' is not a whole number (the model's column is integer); "
        "nothing was written"
    )
    code, out, err = _import(home, "c.csv", "id,visits\n3,5\n4,lots\n")
    assert code == 2 and "row 2, column 'visits': 'lots' is not a whole number" in err, err
    assert _rows(home, f"SELECT id, visits FROM {table} ORDER BY id") == [(1, 3), (2, 4)]


def test_a_new_column_forced_to_text_is_refused_or_reported(home: Path) -> None:
    assert _import(home, "a.csv", "id,plan\n1,free\n2,pro\n", "--primary-key", "id")[0] == 0
    text = "id,score\n" + "".join(f"{i},{i * 1.5}\n" for i in range(3, 12)) + "12,n/a\n"
    code, _, err = _import(home, "b.csv", text)
    assert code == 2
    assert "new column 'score' would be stored as text" in err and "row 10 ('n/a')" in err, err
    assert "--allow-text-fallback" in err
    code, out, err = _import(home, "b.csv", text, "--allow-text-fallback")
    assert code == 0, err
    assert "column types: score string" in out and "column score stored as text because of rows 10" in out, (
        out
    )
