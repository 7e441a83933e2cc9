"""Every row of docs/configuration.md, as written, through the environment and through `.env`; a bad
value is one line naming the variable and what is accepted, and a non-zero exit (issue #14, item 1)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ByteSize, TypeAdapter

from overture.config import Settings
from tests.cli.helpers import clean_env, run, serving

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DOC = ROOT / "docs" / "configuration.md"
ROW = re.compile(r"^\| `(OVERTURE_[A-Z_]+)` \| (.*?) \| (.*) \|$")


def documented_rows() -> dict[str, list[str]]:
    """Each variable of the settings table with the forms the page writes for it: the default
    (`empty` is the empty string) and every `e.g.` example."""
    rows: dict[str, list[str]] = {}
    for line in CONFIG_DOC.read_text().splitlines():
        match = ROW.match(line)
        if not match:
            continue
        name, default, meaning = match.groups()
        forms = ["" if default.strip() == "empty" else default.strip().strip("`")]
        for example in re.findall(r"e\.g\. ((?:`[^`]+`(?:,? (?:or )?)?)+)", meaning):
            forms += re.findall(r"`([^`]+)`", example)
        rows[name] = forms
    return rows


def test_the_table_and_the_settings_name_the_same_variables() -> None:
    fields = {f"OVERTURE_{name.upper()}" for name in Settings.model_fields}
    assert set(documented_rows()) == fields
    # Every OVERTURE_* variable any page mentions is in the table (the test suite's own aside).
    mentioned = set()
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        mentioned |= set(re.findall(r"OVERTURE_[A-Z_]+[A-Z]", page.read_text()))
    assert mentioned - fields <= {"OVERTURE_TEST_POSTGRES_URL", "OVERTURE_FUZZ_SEED"}, mentioned - fields


def _same(value: Any, form: str, home: Path) -> bool:
    form = form.replace("$OVERTURE_HOME", str(home.resolve()))
    if isinstance(value, list):
        wanted = json.loads(form) if form.startswith("[") else [p for p in form.split(",") if p]
        return value == wanted
    if isinstance(value, bool):
        return value == (form.lower() in ("true", "1", "yes", "on"))
    if isinstance(value, int) and re.search("[A-Za-z]", form):  # a size written with a unit: 4MiB
        return value == TypeAdapter(ByteSize).validate_python(form)
    if form.startswith("./"):
        return Path(value) == Path(form)
    return str(value) == form


def _rounds() -> list[dict[str, str]]:
    """Round k sets every variable to its k-th documented form (the last one again when it has
    fewer), so a handful of processes try every form; a last round sets them all empty."""
    rows = documented_rows()
    depth = max(len(forms) for forms in rows.values())
    return [{name: forms[min(k, len(forms) - 1)] for name, forms in rows.items()} for k in range(depth)] + [
        dict.fromkeys(rows, "")
    ]


@pytest.mark.parametrize("source", ["environment", ".env"])
def test_every_documented_form_is_accepted(tmp_path: Path, source: str) -> None:
    defaults = {f"OVERTURE_{n.upper()}": f.default for n, f in Settings.model_fields.items()}
    for k, values in enumerate(_rounds()):
        cwd = tmp_path / f"round{k}"
        cwd.mkdir()
        values = {n: v.replace("$OVERTURE_HOME", str(cwd / "home")) for n, v in values.items()}
        if values["OVERTURE_HOME"].startswith("/var/"):
            values["OVERTURE_HOME"] = str(cwd / "var-lib-overture")  # the documented form, in the sandbox
        if source == ".env":
            (cwd / ".env").write_text("".join(f"{n}={v}\n" for n, v in values.items()))
            out = run("config", "--json", cwd=cwd)
        else:
            out = run("config", "--json", cwd=cwd, env=clean_env(**values))
        assert out.returncode == 0, (values, out.stderr)
        seen = json.loads(out.stdout)
        home = Path(seen["OVERTURE_HOME"]) if Path(seen["OVERTURE_HOME"]).is_absolute() else cwd / ".overture"
        for name, form in values.items():
            if form == "":  # empty means the default
                default = defaults[name]
                assert (
                    default is None
                    or name == "OVERTURE_EGRESS_ALLOW"
                    or _same(seen[name], str(default), home)
                )
                continue
            if name == "OVERTURE_SECRET_KEY":
                assert seen[name] == "********"
                continue
            if name in ("OVERTURE_DATABASE_URL", "OVERTURE_DATA_URL") and "$" not in form:
                assert seen[name] == form, (name, seen[name], form)
                continue
            assert _same(seen[name], form, cwd / "home" if "home" in form else home), (name, seen[name], form)


BAD = [
    ("OVERTURE_EGRESS_ALLOW", "localhost", "'localhost' is not a CIDR range"),
    ("OVERTURE_EGRESS_ALLOW", "127.0.0.1/32,10.0.0.0/99", "'10.0.0.0/99' is not a CIDR range"),
    ("OVERTURE_EGRESS_ALLOW", "[127.0.0.1/32", "not a valid JSON list"),
    ("OVERTURE_RUN_WORKERS", "maybe", "boolean"),
    ("OVERTURE_WORKER_CONCURRENCY", "lots", "integer"),
    ("OVERTURE_WORKER_CONCURRENCY", "0", "greater than or equal to 1"),
    ("OVERTURE_DATABASE_URL", "nonsense://", "unknown database kind 'nonsense'"),
    ("OVERTURE_DATABASE_URL", "not a url", "not a database URL"),
    ("OVERTURE_DATA_URL", "nonsense://x", "unknown database kind 'nonsense'"),
    ("OVERTURE_LOG_FORMAT", "xml", "'text' or 'json'"),
    ("OVERTURE_SERVER", "nginx", "'uvicorn' or 'granian'"),
    ("OVERTURE_BODY_LIMIT", "lots", "could not parse value and unit"),
    ("OVERTURE_SECRET_KEY", "k" * 32 + ",too-short", "every key must have at least 32 characters"),
]


def _one_line_error(out: Any, name: str, fragment: str) -> None:
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert name in lines[0] and fragment in lines[0] and "accepted:" in lines[0], lines[0]
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(("name", "value", "fragment"), BAD, ids=[f"{n}={v}" for n, v, _ in BAD])
def test_a_bad_value__one_line__exit_2(tmp_path: Path, name: str, value: str, fragment: str) -> None:
    out = run("migrate", cwd=tmp_path, env=clean_env(**{name: value}))
    _one_line_error(out, name, fragment)
    if "SECRET" in name:
        assert value not in out.stderr and "too-short" not in out.stderr  # a key is never echoed


def test_a_bad_value_in_dotenv__and_as_json(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("OVERTURE_RUN_WORKERS=maybe\n")
    _one_line_error(run("init", cwd=tmp_path), "OVERTURE_RUN_WORKERS", "boolean")
    out = run("init", "--json", cwd=tmp_path)
    assert out.returncode == 2
    body = json.loads(out.stderr)
    assert body["code"] == "settings" and "OVERTURE_RUN_WORKERS='maybe'" in body["detail"]


def test_an_unusable_home__one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = run("init", cwd=tmp_path, env=clean_env(OVERTURE_HOME=str(blocker / "home")))
    _one_line_error(out, "OVERTURE_HOME", "cannot be used")


@pytest.mark.slow
def test_serve_with_the_documented_egress_form__starts_and_allows_loopback(tmp_path: Path) -> None:
    """The quickstart's `OVERTURE_EGRESS_ALLOW=127.0.0.1/32 overture serve`: it serves, and a webhook
    to a loopback receiver is accepted at save."""
    creds = json.loads(run("init", "--json", cwd=tmp_path, env=clean_env(OVERTURE_HOME=str(tmp_path))).stdout)
    env = clean_env(OVERTURE_HOME=str(tmp_path), OVERTURE_EGRESS_ALLOW="127.0.0.1/32")
    import httpx

    with serving(tmp_path, env=env) as base:
        r = httpx.post(
            f"{base}/api/v1/workspaces/{creds['workspace_id']}/destinations",
            headers={"Authorization": f"Bearer {creds['api_key']}"},
            json={"name": "local", "type": "webhook", "config": {"url": "http://127.0.0.1:9/hook"}},
        )
        assert r.status_code == 201, r.text


def test_serve_with_a_bad_value__one_line_and_no_server(tmp_path: Path) -> None:
    out = run("serve", cwd=tmp_path, env=clean_env(OVERTURE_HOME=str(tmp_path), OVERTURE_EGRESS_ALLOW="lan"))
    _one_line_error(out, "OVERTURE_EGRESS_ALLOW", "'lan' is not a CIDR range")
