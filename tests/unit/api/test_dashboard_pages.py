"""The dashboard's pages rendered by the real app (TestClient, auth off): what each page
shows comes from the same documents as /api/v1, and it reads without JavaScript."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from tests.unit.api.conftest import Submit, WorkerWire, job_id


def test_builds_list_shows_status_source_and_filters(
    client: TestClient, green_build: dict[str, Any], submit: Submit
) -> None:
    second = submit(ref="main", no_cache=True)  # else its jobs reuse the first results
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    # Newest first, each a real link, its status in words (not colour only).
    assert html.index(f'href="/builds/{second["id"]}"') < html.index(
        f'href="/builds/{green_build["id"]}"'
    )
    assert 'data-status="success"' in html and "✔</span> success" in html
    assert "API / CLI" in html
    only_green = client.get("/", params={"status": "success"}).text
    assert f'/builds/{green_build["id"]}"' in only_green
    assert f'/builds/{second["id"]}"' not in only_green
    assert "No builds match" in client.get("/", params={"project": "nope"}).text


def test_builds_list_pages(client: TestClient, submit: Submit) -> None:
    ids = [submit()["id"] for _ in range(27)]
    first = client.get("/").text
    assert 'rel="next"' in first and f'href="/builds/{ids[-1]}"' in first
    second = client.get("/", params={"page": 2}).text
    assert f'href="/builds/{ids[0]}"' in second and 'rel="prev"' in second
    assert 'rel="next"' not in second


def test_build_page_draws_stages_needs_and_a_table_per_stage(
    client: TestClient, green_build: dict[str, Any]
) -> None:
    html = client.get(f"/builds/{green_build['id']}").text
    # Stage columns in pipeline order, one box per job with its status and log link.
    assert [m for m in re.findall(r'<h3 class="stage"[^>]*>([^<]+)</h3>', html)] == [
        "build",
        "test",
        "deploy",
    ]
    for job in green_build["jobs"]:
        assert f'href="/jobs/{job["id"]}"' in html
        assert f'data-job="{job["name"]}" data-status="{job["status"]}"' in html
    # The manual job has a real play button calling the JSON API.
    deploy = job_id(green_build, "deploy")
    assert f'data-post="/api/v1/jobs/{deploy}/play"' in html
    # Readable without JS: a table per stage.
    assert html.count("<caption>Stage") == 3
    assert 'data-live="/builds/' in html and 'data-final="true"' in html
    assert f'href="/builds/{green_build["id"]}/deliverable"' in html


def test_build_live_fragment_follows_the_store(
    client: TestClient, submit: Submit, worker: WorkerWire
) -> None:
    build = submit()
    compile_id = job_id(build, "compile")
    live = client.get(f"/builds/{build['id']}/live").text
    assert 'data-job="compile" data-status="pending"' in live
    assert 'data-final="false"' in live and "<html" not in live
    assert worker.claim(compile_id).status_code == 200
    assert (
        'data-job="compile" data-status="running"' in client.get(f"/builds/{build['id']}/live").text
    )


def test_job_page_renders_the_log_with_colours_escaped_and_the_artifacts(
    client: TestClient, submit: Submit, worker: WorkerWire
) -> None:
    build = submit()
    compile_id = job_id(build, "compile")
    art = worker.artifact("compile", b"compiled\n", files=["out/app"])
    log = "\x1b[32mgreen ok\x1b[0m <script>alert(1)</script>\n"
    worker.run(compile_id, log=log, artifacts=[art])
    html = client.get(f"/jobs/{compile_id}").text
    assert '<span class="a-fg2">green ok</span>' in html
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert f'href="/api/v1/artifacts/{art["digest"]}" download="compile.tar.gz"' in html
    assert art["digest"] in html and "out/app" in html
    assert 'class="exit-code">0<' in html
    assert 'data-final="true"' in html
    assert (
        "script-src 'self'" in client.get(f"/jobs/{compile_id}").headers["content-security-policy"]
    )


def test_deliverable_page_lists_manifest_artifacts_and_provenance_link(
    client: TestClient, green_build: dict[str, Any]
) -> None:
    html = client.get(f"/builds/{green_build['id']}/deliverable").text
    assert green_build["deliverable"]["digest"] in html
    assert "farm.deliverable/v1" in html  # the manifest itself
    assert "out/app" in html  # an artifact's file list
    for job in green_build["jobs"]:
        for a in job["artifacts"]:
            assert f'href="/api/v1/artifacts/{a["digest"]}"' in html


def test_missing_things_are_html_pages_with_the_api_status(client: TestClient) -> None:
    page = client.get("/builds/999")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "build 999" in page.text
    assert client.get("/jobs/999").status_code == 404
    assert client.get("/rollouts/999").status_code == 404


def test_releases_page_and_static_files(client: TestClient, green_build: dict[str, Any]) -> None:
    resp = client.post("/api/v1/releases", json={"build": green_build["id"], "version": "1.0.0"})
    assert resp.status_code == 201, resp.text
    html = client.get("/releases").text
    assert "1.0.0" in html and f'href="/builds/{green_build["id"]}"' in html
    assert client.get("/static/dashboard.js").status_code == 200
    assert "text/css" in client.get("/static/dashboard.css").headers["content-type"]
    # The dashboard is not part of the API's description (its routes are HTML).
    assert "/builds/{build_id}/live" not in client.get("/openapi.json").json()["paths"]
