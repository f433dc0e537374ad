"""A real local HTTP receiver for notification tests (127.0.0.1, stopped by the test).

It can fail the first N requests, hang on the first one (to kill a worker
mid-delivery), and verifies the firewatch signature of each request it records.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from firewatch.notifications.model import verify_signature


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    signature_ok: bool | None

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Receiver:
    url: str
    secret: str | None = None
    fail_first: int = 0
    always_fail: bool = False
    hang_first: bool = False
    requests: list[Received] = field(default_factory=list)
    delivered: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    hung: threading.Event = field(default_factory=threading.Event)
    got_delivery: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def receiver(**options: Any) -> Iterator[Receiver]:
    state = Receiver(url="", **options)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # silence stderr
            return

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            ok: bool | None = None
            if state.secret is not None:
                ts = headers.get("x-firewatch-timestamp")
                sig = headers.get("x-firewatch-signature", "")
                ok = ts is not None and verify_signature(state.secret, int(ts), body, sig)
            with state.lock:
                state.requests.append(Received(headers, body, ok))
                n = len(state.requests)
            if state.hang_first and n == 1:
                state.hung.set()
                state.release.wait(300)
                return  # the worker is dead by now; answer nothing
            fail = state.always_fail or n <= state.fail_first
            self.send_response(503 if fail else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            if not fail:
                with state.lock:
                    state.delivered.append(Received(headers, body, ok))
                state.got_delivery.set()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
