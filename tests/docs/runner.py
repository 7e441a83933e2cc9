"""The documentation as a test: every shell block of README.md and docs/*.md, run in order, as
written, in one shell state, against a fresh `overture serve --first-run` (what `make run` starts).

A block fails when a command fails, an HTTP answer is not 2xx, or anything is written to stderr.
A block that cannot run here says why, on the line above its fence:
`<!-- docs-test: skip (the reason) -->` (long-running servers, benchmarks, another machine)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(sh|bash|shell)\n(.*?)^```", re.M | re.S)
SKIP = re.compile(r"<!-- docs-test: skip \((.+?)\) -->\s*$")
DOC_PORT = "127.0.0.1:8000"

# Every curl is checked: the answer must be 2xx. A failure is noted in a file (a check inside
# `$(...)` cannot stop the block by itself) and the block fails after it ran.
PRELUDE = r"""
curl() {
  local out status
  out=$(command curl -sS -w '\n%{http_code}' "$@") \
    || { echo "curl failed: curl $*" >> "$DOCS_FAILURES"; return 1; }
  status=${out##*$'\n'}
  printf '%s\n' "${out%$'\n'*}"
  if [ "$status" -lt 200 ] || [ "$status" -ge 300 ]; then
    echo "HTTP $status: curl $* -> ${out%$'\n'*}" >> "$DOCS_FAILURES"
    return 1
  fi
}
"""


@dataclass
class Block:
    page: str
    line: int
    code: str
    skip: str | None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list[Path]:
    """README first, then the quickstart (it makes the variables the others use), then the rest."""
    docs = sorted((ROOT / "docs").glob("*.md"))
    quick = ROOT / "docs" / "quickstart.md"
    return [ROOT / "README.md", quick, *[p for p in docs if p != quick]]


def blocks() -> list[Block]:
    out = []
    for page in pages():
        text = page.read_text()
        for match in FENCE.finditer(text):
            line = text[: match.start()].count("\n") + 1
            above = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            skip = SKIP.search(above)
            out.append(
                Block(str(page.relative_to(ROOT)), line, match.group(2), skip.group(1) if skip else None)
            )
    return out


class Shell:
    """Runs blocks one after another in `cwd`, carrying every variable a block sets to the next."""

    def __init__(self, cwd: Path, env: dict[str, str], port: int) -> None:
        self.cwd = cwd
        self.env = env
        self.port = port
        self.state = cwd / ".docs-state.sh"
        self.state.write_text("")
        (cwd / ".docs-prelude.sh").write_text(PRELUDE)
        self.failures = cwd / ".docs-failures"
        self.count = 0
        self.groups: list[int] = []

    def run(self, block: Block, timeout: float = 600) -> tuple[bool, str]:
        self.failures.write_text("")
        code = block.code.replace(DOC_PORT, f"127.0.0.1:{self.port}")
        # What a reader's terminal keeps between pastes: variables (arrays too) and functions.
        script = (
            f"set -a\nsource {self.state.name}\nsource .docs-prelude.sh\n{code}\n"
            f"{{ export -p; for v in $(compgen -A arrayvar); do case $v in BASH*|FUNCNAME|GROUPS|"
            f"PIPESTATUS|DIRSTACK|COMP*) ;; *) declare -p $v;; esac; done; declare -f; }} "
            f"> {self.state.name}.new\n"
        )
        # Output goes to files, not pipes: a block may leave a process running in the background
        # (`overture dev receiver &`), which keeps its output open. Each block is a process group
        # of its own, so `stop_background` can end what it left running.
        self.count += 1
        out, err = self.cwd / f".block{self.count}.out", self.cwd / f".block{self.count}.err"
        with out.open("w") as stdout, err.open("w") as stderr:
            proc = subprocess.Popen(
                ["bash", "-c", script],
                cwd=self.cwd,
                env={**self.env, "DOCS_FAILURES": str(self.failures)},
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
            self.groups.append(proc.pid)
            proc.wait(timeout=timeout)
        proc.stdout_text, proc.stderr_text = out.read_text(), err.read_text()
        new_state = self.cwd / f"{self.state.name}.new"
        if new_state.exists():
            # `export -p` also lists what bash sets itself; keep only what can be set again.
            lines = [
                ln
                for ln in new_state.read_text().splitlines()
                if not re.match(r"declare -x (SHLVL|PWD|OLDPWD|_)=", ln)
            ]
            self.state.write_text("\n".join(lines) + "\n")
            new_state.unlink()
        problems = self.failures.read_text().strip()
        ok = proc.returncode == 0 and not problems and not proc.stderr_text.strip()
        report = (
            f"{block.where}: exit {proc.returncode}\n--- failures\n{problems}\n"
            f"--- stderr\n{proc.stderr_text[-3000:]}\n--- stdout\n{proc.stdout_text[-3000:]}"
        )
        return ok, report

    def stop_background(self) -> None:
        for pgid in self.groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGTERM)


def clean_env(home_parent: Path, bin_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVERTURE_")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(home_parent)
    return env
