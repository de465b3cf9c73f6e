"""farm/http.py against a real HTTP server on 127.0.0.1: one retry rule, one error mapping."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from farm import __version__
from farm.cli.client import ApiClient
from farm.errors import (
    Conflict,
    CorruptBlob,
    DigestMismatch,
    FarmError,
    InvalidRequest,
    NotFound,
    PipelineError,
    RegistryError,
    ServiceUnavailable,
    SourceError,
    error_class,
)
from farm.http import (
    HttpClient,
    HttpConfig,
    RetryPolicy,
    error_from_response,
    should_retry,
    worth_retrying,
)
from farm.registry.transfer.wire import error_from
from farm.worker.cache import CacheIndex

FAST = RetryPolicy(attempts=3, backoff=0.001, max_wait=0.01)


@dataclass
class Answer:
    status: int = 200
    body: object = None  # dict/list: JSON; bytes: as is
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Script:
    """What the server answers, per path, in order (the last answer repeats)."""

    def __init__(self) -> None:
        self.answers: dict[str, list[Answer]] = {}
        self.seen: list[Seen] = []
        self.lock = threading.Lock()

    def on(self, path: str, *answers: Answer) -> None:
        self.answers[path] = list(answers)

    def next(self, path: str) -> Answer:
        with self.lock:
            queue = self.answers.get(path) or [Answer(404, {"detail": "Not Found"})]
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def calls(self, path: str) -> list[str]:
        return [s.method for s in self.seen if s.path.split("?")[0] == path]


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            with script.lock:
                script.seen.append(
                    Seen(
                        self.command,
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                    )
                )
            answer = script.next(self.path.split("?")[0])
            if isinstance(answer.body, bytes):
                payload, kind = answer.body, "application/octet-stream"
            elif answer.body is None:
                payload, kind = b"", "text/plain"
            else:
                payload, kind = json.dumps(answer.body).encode(), "application/json"
            self.send_response(answer.status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _answer

    return Handler


@dataclass
class Server:
    url: str
    script: Script


@pytest.fixture
def server() -> Iterator[Server]:
    script = Script()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", script)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


@pytest.fixture
def client(server: Server) -> Iterator[HttpClient]:
    with HttpClient(HttpConfig(server.url, timeout=10, retry=FAST)) as c:
        yield c


def refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def hanging_up() -> Iterator[tuple[str, list[int]]]:
    """A server that accepts each connection and closes it without a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    accepted: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(1)
            conn.recv(65536)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    finally:
        stop.set()
        thread.join(10)
        listener.close()


# --- retries -----------------------------------------------------------------------------


def test_503_is_retried_then_succeeds(client: HttpClient, server: Server) -> None:
    server.script.on("/x", Answer(503), Answer(503), Answer(200, {"ok": True}))
    assert client.json("GET", "/x") == {"ok": True}
    assert server.script.calls("/x") == ["GET", "GET", "GET"]


def test_retries_are_bounded(client: HttpClient, server: Server) -> None:
    server.script.on("/x", Answer(503, {"detail": "redis is down", "error": "ServiceUnavailable"}))
    with pytest.raises(ServiceUnavailable, match=r"^redis is down$"):
        client.request("GET", "/x")
    assert len(server.script.calls("/x")) == 3


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (Answer(400, {"detail": "bad", "error": "UploadError"}), RegistryError),
        (Answer(404, {"detail": "no build 7", "error": "NotFound"}), NotFound),
        (Answer(409, {"detail": "already finished"}), Conflict),
        (Answer(507, {"detail": "No space left", "error": "RegistryError"}), RegistryError),
        (Answer(501, {"detail": "not implemented"}), FarmError),
        (Answer(500, {"detail": "rot", "error": "CorruptBlob"}), CorruptBlob),
    ],
)
def test_4xx_507_501_and_corrupt_blobs_are_not_retried(
    client: HttpClient, server: Server, answer: Answer, error: type[FarmError]
) -> None:
    server.script.on("/x", answer, Answer(200, {"ok": True}))
    with pytest.raises(error) as caught:
        client.request("GET", "/x")
    assert caught.value.http_status == answer.status
    assert server.script.calls("/x") == ["GET"]


def test_post_is_retried_only_when_said_idempotent(client: HttpClient, server: Server) -> None:
    server.script.on("/p", Answer(503), Answer(200, {"ok": True}))
    with pytest.raises(ServiceUnavailable):
        client.request("POST", "/p", json={})
    assert server.script.calls("/p") == ["POST"]
    assert client.post_json("/p", {"attempt": 1}, idempotent=True) == {"ok": True}
    assert server.script.calls("/p") == ["POST", "POST"]
    assert json.loads(server.script.seen[-1].body) == {"attempt": 1}


def test_transport_failures_of_a_sent_request(hanging_up: tuple[str, list[int]]) -> None:
    url, accepted = hanging_up
    with HttpClient(HttpConfig(url, retry=FAST)) as c:
        with pytest.raises(ServiceUnavailable, match=r"\(RemoteProtocolError\)"):
            c.request("GET", "/x")
        assert len(accepted) == 3  # idempotent: bounded retries
        accepted.clear()
        with pytest.raises(ServiceUnavailable):
            c.request("POST", "/x")
        assert len(accepted) == 1  # it may have been acted on: not repeated
        accepted.clear()
        with pytest.raises(ServiceUnavailable):
            c.post_json("/x", {}, idempotent=True)
        assert len(accepted) == 3


def test_connection_refused_is_service_unavailable_with_the_hint() -> None:
    url = refused_url()
    config = HttpConfig(url, retry=FAST, hint="is `farm up` running?")
    with HttpClient(config) as c, pytest.raises(ServiceUnavailable) as caught:
        c.post_json("/api/v1/builds", {})  # never sent: safe to retry even a POST
    message = str(caught.value)
    assert message.startswith(f"cannot reach the farm API at {url} (ConnectError): ")
    assert message.endswith("; is `farm up` running?") and "\n" not in message


def test_the_retry_rule() -> None:
    request = httpx.Request("GET", "http://127.0.0.1/")
    assert should_retry(httpx.ConnectError("x"), idempotent=False)
    assert not should_retry(httpx.ReadTimeout("x", request=request), idempotent=False)
    assert should_retry(httpx.ReadTimeout("x", request=request), idempotent=True)
    assert not should_retry(httpx.UnsupportedProtocol("ftp"), idempotent=True)
    assert should_retry(KeyError("x"), idempotent=True, transient=(KeyError,))
    assert not should_retry(ValueError("x"), idempotent=True)
    assert worth_retrying(ServiceUnavailable("x")) and worth_retrying(FarmError("x"))
    assert not worth_retrying(CorruptBlob("x")) and not worth_retrying(NotFound("x"))


# --- error mapping -------------------------------------------------------------------------


def test_error_class_from_header_or_body(client: HttpClient, server: Server) -> None:
    server.script.on(
        "/h", Answer(400, {"detail": "bytes hash to sha256:00"}, {"X-Farm-Error": "DigestMismatch"})
    )
    with pytest.raises(DigestMismatch, match=r"^bytes hash to sha256:00$"):
        client.request("PUT", "/h", content=b"x")
    server.script.on("/b", Answer(422, {"detail": "no ref main", "error": "SourceError"}))
    with pytest.raises(SourceError, match=r"^no ref main$"):
        client.request("GET", "/b")


def test_unknown_names_fall_back_on_the_status(client: HttpClient, server: Server) -> None:
    server.script.on(
        "/v", Answer(422, {"detail": "body.repo: Field required", "error": "ValidationError"})
    )
    with pytest.raises(InvalidRequest, match=r"^body.repo: Field required$"):
        client.request("GET", "/v")
    fastapi_list = {"detail": [{"loc": ["body", "ref"], "msg": "Field required"}, "other"]}
    server.script.on("/l", Answer(422, fastapi_list))
    with pytest.raises(InvalidRequest, match=r"^body.ref: Field required; other$"):
        client.request("GET", "/l")
    server.script.on("/n", Answer(404, {"detail": "Not Found"}))
    with pytest.raises(NotFound, match=r"^Not Found$"):
        client.request("GET", "/n")
    server.script.on("/t", Answer(502, b"bad gateway\nmore"))
    with pytest.raises(FarmError, match=r"^bad gateway$") as caught:
        client.request("GET", "/t")
    assert type(caught.value) is FarmError and caught.value.http_status == 502
    server.script.on("/e", Answer(418))
    with pytest.raises(FarmError, match=r"^HTTP 418 from GET http://127\.0\.0\.1:\d+/e$"):
        client.request("GET", "/e")


def test_problems_become_a_pipeline_error_one_per_line(client: HttpClient, server: Server) -> None:
    problems = [".farm-ci.yml:3:5: unknown key 'scirpt'", ".farm-ci.yml:9:1: stage 'x' unknown"]
    body = {"detail": f"{problems[0]} (and 1 more)", "error": "PipelineError", "problems": problems}
    server.script.on("/builds", Answer(422, body))
    with pytest.raises(PipelineError) as caught:
        client.post_json("/builds", {"repo": "r"})
    assert str(caught.value) == "\n".join(problems)
    first = caught.value.diagnostics[0]
    assert (first.file, first.line, first.col, first.message) == (
        ".farm-ci.yml",
        3,
        5,
        "unknown key 'scirpt'",
    )
    # Without a name, problems still mean a pipeline error.
    server.script.on("/builds", Answer(422, {"detail": "x", "problems": ["just text"]}))
    with pytest.raises(PipelineError, match=r"^just text$"):
        client.request("GET", "/builds")


def test_one_mapping_for_httpx_and_the_data_plane() -> None:
    body = json.dumps({"detail": "session gone"}).encode()
    response = httpx.Response(404, headers={"X-Farm-Error": "UploadError"}, content=body)
    for error in (error_from_response(response), error_from(404, "UploadError", body, "PUT x")):
        assert type(error).__name__ == "UploadError" and str(error) == "session gone"
        assert error.http_status == 404
    assert error_class("BlobNotFound") is not None and error_class("FarmError") is FarmError
    assert error_class("Diagnostic") is None and error_class("json") is None
    assert error_class("") is None and error_class(None) is None


def test_not_json_is_a_farm_error(client: HttpClient, server: Server) -> None:
    server.script.on("/raw", Answer(200, b"<html>"))
    with pytest.raises(FarmError, match="not JSON"):
        client.json("GET", "/raw")


# --- headers and streaming -------------------------------------------------------------------


def test_bearer_token_and_user_agent_are_sent(server: Server) -> None:
    server.script.on("/me", Answer(200, {}))
    with HttpClient(HttpConfig(server.url, token="s3cret")) as c:
        c.json("GET", "/me")
    headers = server.script.seen[-1].headers
    assert headers["authorization"] == "Bearer s3cret"
    assert headers["user-agent"] == f"farm/{__version__}"
    with HttpClient(HttpConfig(server.url)) as c:
        c.json("GET", "/me")
    assert "authorization" not in server.script.seen[-1].headers


def test_stream_checks_and_retries_before_the_body(client: HttpClient, server: Server) -> None:
    server.script.on("/blob", Answer(503), Answer(200, b"payload" * 1000))
    with client.stream("GET", "/blob") as response:
        assert b"".join(response.iter_raw()) == b"payload" * 1000
    assert server.script.calls("/blob") == ["GET", "GET"]
    server.script.on("/gone", Answer(404, {"detail": "no blob", "error": "BlobNotFound"}))
    with pytest.raises(NotFound, match=r"^no blob$"), client.stream("GET", "/gone"):
        pytest.fail("the body of an error is never handed over")


def test_a_stream_that_breaks_is_service_unavailable() -> None:
    """A body shorter than its Content-Length: the connection breaks mid-stream."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf")
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        with (
            HttpClient(HttpConfig(url, retry=FAST)) as c,
            pytest.raises(ServiceUnavailable),
            c.stream("GET", "/x") as response,
        ):
            b"".join(response.iter_raw())
    finally:
        listener.close()
        thread.join(10)


def test_retry_policy_is_validated() -> None:
    with pytest.raises(FarmError):
        RetryPolicy(attempts=0)


# --- the clients on the core -------------------------------------------------------------------


def test_cli_client_keeps_its_one_line_errors(server: Server) -> None:
    url = refused_url()
    with pytest.raises(ServiceUnavailable) as caught:
        ApiClient(url).json("GET", "/api/v1/builds/1")
    assert str(caught.value).startswith(f"cannot reach the farm API at {url} (ConnectError)")
    assert str(caught.value).endswith("is `farm up` running? (set --api or FARM_API_URL)")

    api = ApiClient(server.url + "/")
    server.script.on("/api/v1/artifacts/d", Answer(200, b"abc" * 10_000))
    assert b"".join(api.stream("/api/v1/artifacts/d")) == b"abc" * 10_000
    server.script.on("/api/v1/builds/9/cancel", Answer(409, {"detail": "build 9 is finished"}))
    with pytest.raises(Conflict, match=r"^build 9 is finished$"):
        api.json("POST", "/api/v1/builds/9/cancel")
    api.close()


def test_cache_index_on_the_core(server: Server) -> None:
    prefix = "/api/v1/worker/caches/group/app"
    server.script.on(f"{prefix}/k1", Answer(200, {"digest": "sha256:" + "a" * 64}))
    server.script.on(f"{prefix}/k2", Answer(404, {"detail": "no cache", "error": "NotFound"}))
    server.script.on(f"{prefix}/k3", Answer(503), Answer(200, {}))
    index = CacheIndex(server.url, timeout=10, tries=3)
    try:
        assert index.get("group/app", "k1") == "sha256:" + "a" * 64
        assert index.get("group/app", "k2") is None
        index.put("group/app", "k3", "sha256:" + "b" * 64, 12)
        assert server.script.calls(f"{prefix}/k3") == ["PUT", "PUT"]
        assert json.loads(server.script.seen[-1].body)["size"] == 12
        server.script.on(
            f"{prefix}/k4", Answer(400, {"detail": "not uploaded", "error": "UploadError"})
        )
        with pytest.raises(RegistryError, match="not uploaded"):
            index.put("group/app", "k4", "sha256:" + "c" * 64, 1)
    finally:
        index.close()
