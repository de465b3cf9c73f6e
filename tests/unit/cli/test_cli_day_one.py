"""Issue 15's CLI: retry, builds, logs of every attempt (no colours in a pipe), status
facts, one artifact file by path, and answers that are not a farm's."""

from __future__ import annotations

import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from farm.cli.logs import AnsiStripper, strip_ansi
from tests.farmtest import free_port
from tests.unit.cli.conftest import Farm, LiveApi, one_line


def _job(build: dict[str, Any], name: str) -> dict[str, Any]:
    return next(j for j in build["jobs"] if j["name"] == name)


def _failed(live_api: LiveApi, project: Path) -> dict[str, Any]:
    build = live_api.submit(project)
    live_api.worker.run(_job(build, "compile")["id"], exit_code=1, log="\x1b[31mfirst\x1b[0m\n")
    doc: dict[str, Any] = live_api.http.get(f"/api/v1/builds/{build['id']}").json()
    assert doc["status"] == "failed"
    return doc


def test_retry_a_job_then_logs_show_both_attempts(
    farm: Farm, live_api: LiveApi, project: Path
) -> None:
    build = _failed(live_api, project)
    job_id = _job(build, "compile")["id"]
    result = farm("retry", str(job_id))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"job {job_id} (compile): pending, attempt 2"
    live_api.worker.run(job_id, 2, log="second\n")
    logs = farm("logs", str(job_id))  # CliRunner's stdout is not a terminal: no colours
    assert logs.exit_code == 0, logs.stderr
    assert logs.stdout == "--- attempt 1 ---\nfirst\n--- attempt 2 ---\nsecond\n"
    coloured = farm("logs", str(job_id), "--color", "always")
    assert "\x1b[31mfirst" in coloured.stdout
    status = farm("status", str(build["id"]))
    line = next(ln for ln in status.stdout.splitlines() if " compile " in ln)
    assert "attempt 2" in line and "success" in line


def test_retry_a_build_and_usage(farm: Farm, live_api: LiveApi, project: Path) -> None:
    build = _failed(live_api, project)
    result = farm("retry", "--build", str(build["id"]))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"build {build['id']}: running")
    assert farm("retry").exit_code == 2
    again = farm("retry", "--build", str(build["id"]))  # nothing failed any more
    assert again.exit_code == 2 and "no failed or canceled job" in one_line(again.stderr)


def test_builds_table_filters_by_status(farm: Farm, live_api: LiveApi, project: Path) -> None:
    failed = _failed(live_api, project)
    live_api.submit(project)
    result = farm("builds", "--project", project.name, "--status", "failed")
    assert result.exit_code == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["id", "status", "project", "ref", "commit", "created", "duration"]
    assert [r.split()[:2] for r in rows] == [[str(failed["id"]), "failed"]]
    assert rows[0].split()[4] == failed["commit"][:8]


def _tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_artifacts_get_one_file_by_path(
    farm: Farm, live_api: LiveApi, project: Path, tmp_path: Path
) -> None:
    build = live_api.submit(project)
    art = live_api.worker.artifact(
        "compile", _tar({"out/app.txt": b"hello\n"}), files=["out/app.txt"]
    )
    live_api.worker.run(_job(build, "compile")["id"], artifacts=[art])
    target = tmp_path / "got.txt"
    result = farm("artifacts", "get", str(build["id"]), "compile", "out/app.txt", "-o", str(target))
    assert result.exit_code == 0, result.stderr
    assert target.read_bytes() == b"hello\n"
    missing = farm("artifacts", "get", str(build["id"]), "compile", "out/nope", "-o", str(target))
    assert missing.exit_code == 2 and "no file 'out/nope'" in one_line(missing.stderr)
    assert not (tmp_path / "got.txt.part").exists()
    usage = farm("artifacts", "get", "sha256:" + "0" * 64)  # DIGEST still needs -o
    assert usage.exit_code == 2 and "-o FILE" in usage.stderr


def test_strip_ansi_across_chunks() -> None:
    assert strip_ansi("\x1b[1;32mok\x1b[0m \x1b]0;title\x07done") == "ok done"
    stripper = AnsiStripper()
    assert stripper.feed("a\x1b[3") == "a"
    assert stripper.feed("1mb") == "b"
    assert stripper.flush() == ""


@pytest.fixture
def html_site() -> Iterator[str]:
    """A web server that answers every request with an HTML page (a proxy, a wiki)."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!doctype html><html><body>" + b"x" * 500 + b"</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    port = free_port()
    server = http.server.HTTPServer(("127.0.0.1", port), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{port}"
    server.shutdown()
    server.server_close()


def test_a_non_farm_page_is_one_line_and_no_scheme_is_http(farm: Farm, html_site: str) -> None:
    for args in (("logs", "1"), ("status", "1")):
        result = farm(*args, api=f"http://{html_site}")
        assert result.exit_code == 2
        assert one_line(result.stderr) == (
            f"error: http://{html_site} did not answer like a farm API (HTTP 200 text/html); "
            "check --api or FARM_API_URL"
        )
        assert "<html" not in result.stdout
    bare = farm("status", "1", api=html_site)  # host:port without a scheme: http://
    assert f"http://{html_site} did not answer like a farm API" in one_line(bare.stderr)


def test_status_shows_tests_and_coverage(farm: Farm, live_api: LiveApi, project: Path) -> None:
    build = live_api.submit(project)
    job_id = _job(build, "compile")["id"]
    worker = live_api.worker
    assert worker.claim(job_id).status_code == 200
    tests = {"tests": 4, "failures": 1, "errors": 0, "skipped": 1, "time": 1.5}
    tests["failed"] = [{"name": "test_b", "classname": "pkg.mod", "message": "assert 1 == 2"}]
    body = {
        "protocol": worker.protocol,
        "attempt": 1,
        "job_token": worker.job_tokens[job_id],
        "exit_code": 1,
        "coverage": 81.5,
        "tests": tests,
    }
    assert live_api.http.post(f"/api/v1/worker/jobs/{job_id}/finish", json=body).is_success
    result = farm("status", str(build["id"]))
    line = next(ln for ln in result.stdout.splitlines() if " compile " in ln)
    assert "coverage 81.5%" in line and "tests 4: 1 failed, 1 skipped" in line
    assert "✗ pkg.mod.test_b: assert 1 == 2" in result.stdout


def test_lint_explain_never_cuts_job_names(farm: Farm, tmp_path: Path) -> None:
    name = "a-very-long-job-name-" + "x" * 90
    path = tmp_path / ".gitlab-ci.yml"
    path.write_text(f"{name}:\n  script: [make]\n  image: python:3.11-slim-bookworm\n")
    result = farm("lint", str(path), "--explain")
    assert result.exit_code == 0, result.stderr
    assert any(name in line for line in result.stdout.splitlines())
