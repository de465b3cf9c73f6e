"""The dashboard in a real headless browser (Debian's chromium driven by Playwright)
against a whole farm with auth on: sign in through the form, watch a running build turn
green and its log stream without a reload, download an artifact and check its sha256,
play a manual job from the graph.  Screenshots land in tests/output/screenshots/."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.farmtest import BUSYBOX, Farm, job_named, make_repo

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("FARM_TEST_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[1] / "output" / "screenshots"
SECRET = "hunter2-very-secret"

# ``slow`` prints one line, sleeps while the pages are opened, then prints a green line
# (after the pages opened), leaves an artifact; ``check`` needs it; ``ship`` is manual.
PIPELINE = f"""
image: {BUSYBOX}
stages: [build, test, deploy]
slow:
  stage: build
  script:
    - echo "early line token=$DEPLOY_TOKEN"
    - sleep 8
    - printf '\\033[32mlate %s\\033[0m\\n' line  # the command echo never says "late line"
    - mkdir -p out && echo "artifact of $CI_COMMIT_SHORT_SHA" > out/app.txt
  artifacts:
    paths: [out/]
check:
  stage: test
  needs: [slow]
  script: [echo checked]
ship:
  stage: deploy
  when: manual
  script: [echo shipped, sleep 2]
"""


def shot(page: Page, name: str) -> None:
    """Save a full-page screenshot under tests/output/screenshots/."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing; run scripts/bootstrap.sh (it installs chromium)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def signed_in(browser: Browser, farm: Farm) -> Iterator[BrowserContext]:
    """A browser session signed in through the real login form with the admin token."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto(farm.url + "/releases")
    expect(page).to_have_url(f"{farm.url}/login?next=/releases")  # no token yet: the form
    page.get_by_label("Token").fill("farm_wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("unknown API token")
    page.get_by_label("Token").fill(farm.token)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(farm.url + "/releases")  # back where it was going
    page.close()
    yield context
    context.close()


def test_builds_list(signed_in: BrowserContext, farm: Farm, tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "listed", {".farm-ci.yml": f"image: {BUSYBOX}\nok: {{script: [echo ok]}}\n"}
    )
    build = farm.wait(farm.submit(repo, ref="main")["id"])
    page = signed_in.new_page()
    page.goto(farm.url + "/")
    row = page.locator(f'tr[data-build="{build["id"]}"]')
    expect(row).to_contain_text("success")  # the word, not only the colour
    expect(row).to_contain_text("listed")
    expect(row).to_contain_text("API / CLI")
    page.get_by_label("Project").fill("listed")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(f"{farm.url}/?project=listed&ref=&status=")
    shot(page, "builds-list")
    page.get_by_role("link", name=f"#{build['id']}").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Build #{build['id']}")
    # `farm open BUILD` names the same page (--print: no browser on this host).
    opened = farm.cli("open", str(build["id"]), "--print")
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.strip() == page.url == f"{farm.url}/builds/{build['id']}"
    page.close()


def test_a_running_build_turns_green_live_and_its_log_streams(
    signed_in: BrowserContext, farm: Farm, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "shop", {".farm-ci.yml": PIPELINE})
    build_id = farm.submit(repo, ref="main", secrets={"DEPLOY_TOKEN": SECRET})["id"]
    slow = farm.wait_job(build_id, "slow", {"running"})

    graph = signed_in.new_page()
    graph.goto(f"{farm.url}/builds/{build_id}")
    box = graph.locator('.graph .job[data-job="slow"]')
    expect(box).to_have_attribute("data-status", "running")
    graph.evaluate("window.__sameDocument = true")  # gone if the page reloads
    shot(graph, "build-running")

    job = signed_in.new_page()
    job.goto(f"{farm.url}/jobs/{slow['id']}")
    job.evaluate("window.__sameDocument = true")
    log = job.locator("#log")
    assert "late line" not in log.inner_text()  # printed only after the page opened
    expect(log).to_contain_text("early line", timeout=30_000)
    # Printed after the page opened, read on through the log cursor, in its colour.
    late = log.get_by_text("late line", exact=True)
    expect(late).to_have_class("a-fg2", timeout=60_000)
    expect(log).to_contain_text("[MASKED]")
    assert SECRET not in log.inner_text()
    # The job's facts update too: exit code, and the artifact with its digest.
    expect(job.locator(".exit-code")).to_have_text("0", timeout=60_000)
    download_link = job.locator("a.download").first
    expect(download_link).to_be_visible(timeout=30_000)
    assert job.evaluate("window.__sameDocument") is True
    shot(job, "job-log")

    # The graph turned green without a reload; ``check`` (needs: slow) ran after it.
    expect(box).to_have_attribute("data-status", "success", timeout=60_000)
    expect(graph.locator('.graph .job[data-job="check"]')).to_have_attribute(
        "data-status", "success", timeout=60_000
    )
    expect(box).to_contain_text("success")
    assert graph.locator('.graph .edges path[data-from="slow"][data-to="check"]').count() == 1
    assert graph.evaluate("window.__sameDocument") is True
    shot(graph, "build-green")

    # Download the artifact through the page (the cookie authenticates) and check it.
    digest = job_named(farm.build(build_id), "slow")["artifacts"][0]["digest"]
    with job.expect_download() as info:
        download_link.click()
    data = Path(info.value.path()).read_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    job.close()

    # The deliverable: its manifest, each artifact's files, downloads, provenance.
    graph.get_by_role("link", name="Deliverable & artifacts").click()
    expect(graph.locator("pre.manifest")).to_contain_text("farm.deliverable/v1")
    expect(graph.locator(f'tr[data-digest="{digest}"]')).to_contain_text("2 file(s)")
    expect(graph.get_by_role("link", name="signed SLSA statement (DSSE)")).to_be_visible()
    shot(graph, "deliverable")
    graph.close()


def test_play_a_manual_job_from_the_graph(
    signed_in: BrowserContext, farm: Farm, tmp_path: Path
) -> None:
    manual = f"""
image: {BUSYBOX}
stages: [build, deploy]
compile: {{stage: build, script: [echo compiled]}}
ship:
  stage: deploy
  when: manual
  script: [echo shipped, sleep 3]
"""
    repo = make_repo(tmp_path / "manual", {".farm-ci.yml": manual})
    build_id = farm.submit(repo, ref="main")["id"]
    farm.wait_job(build_id, "ship", {"manual"})

    page = signed_in.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{farm.url}/builds/{build_id}")
    page.evaluate("window.__sameDocument = true")
    box = page.locator('.graph .job[data-job="ship"]')
    expect(box).to_have_attribute("data-status", "manual")
    shot(page, "manual-waiting")
    box.get_by_role("button", name="▶ Play").click()  # POSTs /api/v1/jobs/{id}/play
    expect(page.locator("#flash")).to_contain_text("done")
    expect(box).to_have_attribute("data-status", "running", timeout=60_000)
    shot(page, "manual-running")
    expect(box).to_have_attribute("data-status", "success", timeout=60_000)
    assert page.evaluate("window.__sameDocument") is True
    assert "shipped" in farm.log(job_named(farm.build(build_id), "ship")["id"])
    shot(page, "manual-done")
    page.close()


def test_retry_a_failed_job_from_the_graph(
    signed_in: BrowserContext, farm: Farm, tmp_path: Path
) -> None:
    # Fails on its first attempt only: the retried attempt (CI_JOB_ATTEMPT=2) succeeds.
    flaky = f"""
image: {BUSYBOX}
flaky:
  script: ['test "$CI_JOB_ATTEMPT" != 1 || exit 7', echo second time lucky]
"""
    repo = make_repo(tmp_path / "flaky", {".farm-ci.yml": flaky})
    build_id = farm.submit(repo, ref="main")["id"]
    assert farm.wait(build_id)["status"] == "failed"

    page = signed_in.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{farm.url}/builds/{build_id}")
    page.evaluate("window.__sameDocument = true")
    box = page.locator('.graph .job[data-job="flaky"]')
    expect(box).to_have_attribute("data-status", "failed")
    box.get_by_role("button", name="↻ Retry").click()  # POSTs /api/v1/jobs/{id}/retry
    expect(box).to_have_attribute("data-status", "success", timeout=60_000)
    assert page.evaluate("window.__sameDocument") is True
    shot(page, "retried")
    job = job_named(farm.build(build_id), "flaky")
    assert job["attempt"] == 2 and "second time lucky" in farm.log(job["id"])
    page.close()
