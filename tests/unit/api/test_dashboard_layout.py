"""The graph's grid layout and the ANSI renderer, alone (pure, no app)."""

from __future__ import annotations

from datetime import UTC, datetime

from farm.api.dashboard.ansi import SgrState, to_html
from farm.api.dashboard.graph import BOX_H, BOX_W, layout
from farm.api.schemas import JobOut


def job(name: str, stage: str, needs: list[str] | None = None) -> JobOut:
    return JobOut(
        id=abs(hash(name)) % 10_000 + 1,
        build_id=1,
        name=name,
        stage=stage,
        status="created",
        attempt=1,
        exit_code=None,
        reason=None,
        image=None,
        worker=None,
        when="on_success",
        allow_failure=False,
        needs=needs,
        started_at=datetime.now(UTC),
        finished_at=None,
        duration=None,
        artifacts=[],
    )


def test_stages_are_columns_in_declared_order_and_needs_are_edges() -> None:
    jobs = [
        job("lint", "test", needs=[]),
        job("compile", "build"),
        job("unit", "test", needs=["compile"]),
        job("ship", "deploy", needs=["unit", "lint"]),
    ]
    graph = layout(["build", "test", "deploy", "unused"], jobs)
    assert [c.stage for c in graph.columns] == ["build", "test", "deploy"]
    assert [b.job.name for b in graph.columns[1].boxes] == ["lint", "unit"]
    assert {(e.source, e.target) for e in graph.edges} == {
        ("compile", "unit"),
        ("unit", "ship"),
        ("lint", "ship"),
    }
    # Every edge leaves an upstream box's right side and enters a downstream box's left.
    boxes = {b.job.name: b for b in graph.boxes}
    unit_edge = next(e for e in graph.edges if e.target == "unit")
    start = f"M{boxes['compile'].x + BOX_W},{boxes['compile'].y + BOX_H // 2}"
    end = f"{boxes['unit'].x},{boxes['unit'].y + BOX_H // 2}"
    assert unit_edge.path.startswith(start) and unit_edge.path.endswith(end)
    assert graph.width >= boxes["ship"].x + BOX_W and graph.height >= boxes["unit"].y + BOX_H


def test_needs_of_a_parallel_job_reach_every_copy_and_same_stage_edges_loop_out() -> None:
    jobs = [
        job("build 1/2", "build"),
        job("build 2/2", "build"),
        job("pack", "build", needs=["build"]),
    ]
    graph = layout(["build"], jobs)
    assert {e.source for e in graph.edges} == {"build 1/2", "build 2/2"}
    box = graph.boxes[0]
    assert all(e.path.startswith(f"M{box.x + BOX_W},") for e in graph.edges)


def test_ansi_colours_become_classes_and_html_is_escaped() -> None:
    html = str(to_html("\x1b[1;31mred <b>\x1b[0m plain \x1b[38;5;196mx\x1b[K\x1b]0;title\x07\n"))
    assert html == '<span class="a-fg1 a-b">red &lt;b&gt;</span> plain x\n'


def test_ansi_state_carries_over_and_the_cap_marker_is_marked() -> None:
    state = SgrState()
    first = str(to_html("\x1b[32mgreen", state))
    second = str(to_html(" still\n[farm] log truncated: the job wrote more than 10 bytes\n", state))
    assert first == '<span class="a-fg2">green</span>'
    assert second.startswith('<span class="a-fg2"> still\n<mark class="log-cap">[farm] log')
