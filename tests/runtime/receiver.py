"""A small, fast HTTP/1.1 webhook receiver (raw asyncio) for reliability tests and the outbox bench.

Run as `python -m tests.runtime.receiver --log FILE`: prints `PORT <n>` once listening on
127.0.0.1, then appends one line per POST to FILE: `<Idempotency-Key>\\t<possible-duplicate>\\t<status>`.
`GET /_flush` writes out what is buffered and answers when it is on disk. A JSON body may steer the
answer: `{"_status": 503, "_times": 2, "_retry_after": "1"}` answers 503 to the first two receipts of
that key, then 200."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import IO

import orjson

REASONS = {200: b"OK", 400: b"Bad Request", 429: b"Too Many Requests", 503: b"Service Unavailable"}


class Receiver:
    def __init__(self, log: IO[str]) -> None:
        self.log = log
        self.buffer: list[str] = []
        self.receipts: Counter[str] = Counter()

    def flush(self) -> None:
        if self.buffer:
            self.log.write("".join(self.buffer))
            self.buffer.clear()
        self.log.flush()
        os.fsync(self.log.fileno())

    def answer(self, key: str, body: bytes) -> tuple[int, dict[str, str]]:
        self.receipts[key] += 1
        if b'"_status"' not in body:
            return 200, {}
        spec = orjson.loads(body)
        if self.receipts[key] > int(spec.get("_times", 1 << 30)):
            return 200, {}
        extra = {"Retry-After": str(spec["_retry_after"])} if "_retry_after" in spec else {}
        return int(spec["_status"]), extra

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                method, path, _ = lines[0].split(b" ", 2)
                headers: dict[bytes, bytes] = {}
                for line in lines[1:]:
                    name, sep, value = line.partition(b":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get(b"content-length", b"0"))
                body = await reader.readexactly(length) if length else b""
                extra: dict[str, str] = {}
                if path == b"/_flush":
                    self.flush()
                    status = 200
                else:
                    key = headers.get(b"idempotency-key", b"").decode()
                    dup = headers.get(b"x-overture-possible-duplicate", b"false").decode()
                    status, extra = self.answer(key, body)
                    self.buffer.append(f"{key}\t{dup}\t{status}\n")
                reason = REASONS.get(status, b"Status")
                out = [
                    b"HTTP/1.1 %d %s\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n" % (status, reason)
                ]
                out += [f"{k}: {v}\r\n".encode() for k, v in extra.items()]
                out.append(b"\r\nok")
                writer.write(b"".join(out))
                if method == b"GET":
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # client went away, or the server is shutting down
        finally:
            writer.close()

    async def serve(self, port: int) -> None:
        server = await asyncio.start_server(self.handle, "127.0.0.1", port, backlog=1024)
        print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with server:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
                self.flush()
        self.flush()


class ReceiverProcess:
    """Start the receiver in a subprocess (so it never competes with the process under test for
    the GIL) and read what it recorded."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        root = Path(__file__).resolve().parents[2]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.runtime.receiver", "--log", str(log_path)],
            cwd=root,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError(f"receiver did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def records(self) -> list[tuple[str, bool, int]]:
        import httpx

        httpx.get(f"http://127.0.0.1:{self.port}/_flush", timeout=10)
        out = []
        for line in self.log_path.read_text().splitlines():
            key, dup, status = line.split("\t")
            out.append((key, dup == "true", int(status)))
        return out

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    with open(args.log, "a", buffering=1 << 16) as log:
        asyncio.run(Receiver(log).serve(args.port))


if __name__ == "__main__":
    main()
