"""farm lint reports every problem of every class in one run."""

from __future__ import annotations

from farm.pipeline.loader import lint


def test_lint_reports_a_wrong_stage_of_a_job_without_script() -> None:
    """Before: the stage was checked only once the job had a script (one class per run)."""
    text = "stages: [build]\nbad:\n  scrpt: [x]\n  stage: nope\n"
    messages = [d.message for d in lint(text)]
    assert any("did you mean 'script'" in m for m in messages)
    assert any("uses stage 'nope'" in m for m in messages)
