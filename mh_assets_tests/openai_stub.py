"""A loopback OpenAI-compatible server with scripted replies, for tests of scoring and of the judge.

It stands in for a model server (not for a hub): EvalScope's real OpenAI client talks to it over HTTP. Given a
latency and a ``Gauge``, it answers each completion after that many seconds and counts the requests in flight.
"""

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Script = Callable[[list[dict]], str]


class Gauge:
    """Requests being answered now, and the most at once (``peak``)."""

    def __init__(self) -> None:
        self.now = self.peak = 0
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.now -= 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a burst of connections is accepted, not refused or delayed by a short backlog


@contextmanager
def openai_stub(
    script: Script,
    model: str = "stub-model",
    latency_s: float = 0.0,
    gauge: Gauge | None = None,
    completions: Callable[[dict], dict] | None = None,
    authorizations: list[str] | None = None,
) -> Iterator[tuple[str, list[list[dict]]]]:
    """Serve ``/v1/models`` and ``/v1/chat/completions`` on 127.0.0.1, each completion after ``latency_s`` (counted
    in ``gauge`` while it is answered); ``/v1/completions`` only when ``completions`` answers it (request body ->
    response body), else 404 as a chat-only server; each request's Authorization header goes to ``authorizations``.
    Yields (base URL, chat requests received)."""
    received: list[list[dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def _send(self, payload: dict, status: int = 200) -> None:
            body = json.dumps(payload, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._send({"object": "list", "data": [{"id": model, "object": "model", "owned_by": "test"}]})

        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if authorizations is not None:
                authorizations.append(self.headers.get("Authorization", ""))
            if self.path.endswith("/completions") and not self.path.endswith("/chat/completions"):
                if completions is not None:
                    return self._send(completions(request))
                return self._send({"error": {"message": "Not Found", "code": 404}}, status=404)
            with gauge or nullcontext():
                received.append(request["messages"])
                time.sleep(latency_s)
                reply = script(request["messages"])
            self._send({
                "id": f"chatcmpl-{len(received)}",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": reply}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            })  # fmt: skip

    server = _Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", received
    finally:
        server.shutdown()
        server.server_close()
