"""The rollout controller: moves progressing rollouts through deploy, bake and checks.

A thread of the API process ticks every ``FARM_ROLLOUT_TICK`` seconds. Everything it
needs to resume lives in the database — the step, its attempt, the phase, when the bake
ends, the deploy job's build — so a coordinator killed mid-bake picks the bake up where
it was when it starts again (checks that were running are taken again from the start).
Checks run on a small thread pool; their verdicts are applied as transitions for the
``(step, attempt)`` they were measured for, so a result that arrives after a person
promoted, paused or stepped back is refused like a stale job attempt.

Deploy and job checks are jobs of the released build's pipeline run as child builds
(:func:`farm.coordinator.spawn.spawn_job`) with the rollout's variables:
``FARM_ROLLOUT_ID``, ``FARM_ROLLOUT_STEP``, ``FARM_ROLLOUT_SCOPE``, ``FARM_ROLLOUT_CIDRS``
(space-separated; for a scope over 64 KiB of text, ``FARM_ROLLOUT_CIDRS_URL`` instead),
``FARM_RELEASE_VERSION``, ``FARM_PREVIOUS_VERSION`` and ``FARM_ROLLOUT_ACTION``
(``deploy`` or ``check``).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from farm.coordinator.spawn import spawn_job
from farm.deploy.engine import CD_ACTOR, RolloutEngine
from farm.deploy.plans import plan_text
from farm.deploy.probes import probe
from farm.domain.records import BuildRecord
from farm.domain.statuses import FINAL_BUILD, BuildStatus
from farm.errors import FarmError
from farm.rollout import state as rules
from farm.rollout.checks import CheckOutcome, evaluate, evaluate_job, render_url, summarize
from farm.rollout.model import HttpCheck, JobCheck, Plan
from farm.rollout.plan import auto_version, load_plan, matches_auto
from farm.rollout.records import Phase, RolloutRecord
from farm.rollout.snapshot import RolloutState

log = logging.getLogger("farm.rollout")
CIDRS_INLINE_MAX = 64 * 1024
Key = tuple[int, int, int]  # rollout id, step, attempt


class RolloutController:
    """Drives progressing rollouts; one per API process (transitions are CAS-safe)."""

    def __init__(self, engine: RolloutEngine, api_url: str, job_timeout: float) -> None:
        self.engine = engine
        self.api_url = api_url
        self.job_timeout = job_timeout
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="farm-rollout-check")
        self._checks: dict[Key, Future[list[CheckOutcome]]] = {}
        self._stop = threading.Event()

    # --- the loop ------------------------------------------------------------------------

    def run(self, interval: float) -> None:
        """Tick until :meth:`stop`; a failing tick is logged, never fatal."""
        while not self._stop.wait(interval):
            try:
                self.tick()
            except Exception as exc:  # a DB blip must not stop deployments for good
                log.error("rollout controller tick failed: %s", exc)

    def stop(self) -> None:
        """Stop ticking and cut probes short."""
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def tick(self) -> None:
        """One pass: start queued rollouts, advance progressing ones, apply check verdicts."""
        db = self.engine.rollouts
        for project in {r.project for r in db.with_states({RolloutState.PENDING})}:
            self.engine.start_queued(project)
        for rec in db.with_states({RolloutState.PROGRESSING}):
            try:
                self._advance(rec)
            except FarmError as exc:
                log.error("rollout %s: %s", rec.id, exc)
        for key in [k for k, f in self._checks.items() if f.done()]:
            self._verdict(key, self._checks.pop(key))

    def _advance(self, rec: RolloutRecord) -> None:
        plan = self.engine.plan_of(rec)
        snap = rec.snapshot
        db = self.engine.rollouts
        now = datetime.now(UTC)
        if rec.phase is Phase.DEPLOY:
            assert plan.deploy_job is not None
            if rec.job_build_id is None:
                build = self._spawn(rec, plan, plan.deploy_job, "deploy")
                db.set_phase(
                    rec.id,
                    revision=snap.revision,
                    from_phase=Phase.DEPLOY,
                    phase=Phase.DEPLOY,
                    job_build_id=build.id,
                )
                return
            build = self.engine.coord.store.get_build(rec.job_build_id)
            if build.status not in FINAL_BUILD:
                return
            if build.status == BuildStatus.SUCCESS:
                until = now + timedelta(seconds=plan.steps[snap.step].bake)
                db.set_phase(
                    rec.id,
                    revision=snap.revision,
                    from_phase=Phase.DEPLOY,
                    phase=Phase.BAKE,
                    phase_until=until,
                    job_build_id=build.id,
                )
                return
            figures = {"deploy_job": plan.deploy_job, "build": build.id, "status": build.status}
            why = f"deploy job {plan.deploy_job} (build {build.id}) {build.status}"
            verdict = {"step": snap.step, "attempt": snap.attempt, "passed": False, "reason": why}
            transition = rules.checks_failed(
                snap, plan, step=snap.step, attempt=snap.attempt, figures=figures, reason=why
            )
            if self.engine.apply(rec, transition, checks={**verdict, **figures}) is None:
                log.info("rollout %s: deploy verdict came too late", rec.id)
        elif rec.phase is Phase.BAKE:
            baked = rec.phase_until is None or rec.phase_until <= now
            if baked and db.set_phase(
                rec.id,
                revision=snap.revision,
                from_phase=Phase.BAKE,
                phase=Phase.CHECK,
                job_build_id=rec.job_build_id,
            ):
                self._launch(rec, plan)
        elif rec.phase is Phase.CHECK:
            self._launch(rec, plan)  # after a restart: take the checks again

    # --- checks --------------------------------------------------------------------------

    def _launch(self, rec: RolloutRecord, plan: Plan) -> None:
        key = (rec.id, rec.snapshot.step, rec.snapshot.attempt)
        if key not in self._checks and not self._stop.is_set():
            self._checks[key] = self._pool.submit(self._run_checks, rec, plan)

    def _run_checks(self, rec: RolloutRecord, plan: Plan) -> list[CheckOutcome]:
        step = plan.steps[rec.snapshot.step]
        version = rec.snapshot.version
        outcomes: list[CheckOutcome] = []
        for check in step.checks:
            if isinstance(check, HttpCheck):
                url = render_url(check.url, step.scope, version)
                samples = probe(check, url, self._stop)
                outcomes.append(evaluate(check, samples, step.scope, version))
            elif isinstance(check, JobCheck):
                build = self._spawn(rec, plan, check.job, "check")
                outcomes.append(evaluate_job(check, self._wait(build)))
        return outcomes

    def _wait(self, build: BuildRecord) -> str:
        deadline = time.monotonic() + self.job_timeout + 120
        while not self._stop.wait(1.0):
            status = self.engine.coord.store.get_build(build.id).status
            if status in FINAL_BUILD:
                return str(status)
            if time.monotonic() > deadline:
                return "timeout"
        return "interrupted"

    def _verdict(self, key: Key, future: Future[list[CheckOutcome]]) -> None:
        rollout_id, step, attempt = key
        try:
            outcome = summarize(future.result())
        except Exception as exc:
            outcome = CheckOutcome(False, {"error": str(exc)}, f"checks could not run: {exc}")
        rec = self.engine.rollouts.get(rollout_id)
        checks: dict[str, Any] = {
            "step": step,
            "attempt": attempt,
            "passed": outcome.passed,
            "reason": outcome.reason,
            **outcome.figures,
        }
        snap = rec.snapshot
        if (snap.step, snap.attempt) != (step, attempt):
            return  # measured for a step or attempt that is no longer current
        if outcome.passed:
            if snap.state is not RolloutState.PROGRESSING:
                return  # paused meanwhile: a pass waits for resume (which checks again)
            transition = rules.step_ready(
                snap,
                self.engine.plan_of(rec),
                step=step,
                attempt=attempt,
                figures=outcome.figures,
            )
        else:
            transition = rules.checks_failed(
                snap,
                self.engine.plan_of(rec),
                step=step,
                attempt=attempt,
                figures=outcome.figures,
                reason=outcome.reason,
            )
        if self.engine.apply(rec, transition, checks=checks) is None:
            log.info("rollout %s: verdict for step %s came too late", rollout_id, step + 1)

    # --- jobs ----------------------------------------------------------------------------

    def _spawn(self, rec: RolloutRecord, plan: Plan, job: str, action: str) -> BuildRecord:
        snap = rec.snapshot
        scope = plan.steps[snap.step].scope
        release = self.engine.registry.get_release(snap.project, snap.version)
        parent = self.engine.coord.store.get_build(release.build_id)
        cidrs = " ".join(plan.cidrs_of(scope))
        variables = {
            "FARM_ROLLOUT_ID": str(rec.id),
            "FARM_ROLLOUT_STEP": str(snap.step + 1),
            "FARM_ROLLOUT_SCOPE": scope,
            "FARM_RELEASE_VERSION": snap.version,
            "FARM_PREVIOUS_VERSION": snap.previous_version or "",
            "FARM_ROLLOUT_ACTION": action,
        }
        if len(cidrs) <= CIDRS_INLINE_MAX:
            variables["FARM_ROLLOUT_CIDRS"] = cidrs
        else:  # an environment variable over 128 KiB cannot even be passed to exec
            variables["FARM_ROLLOUT_CIDRS_URL"] = (
                f"{self.api_url}/api/v1/rollouts/{rec.id}/scopes/{scope}"
            )
        build = spawn_job(self.engine.coord, parent, job, variables)
        log.info(
            "rollout %s step %s: %s job %s is build %s",
            rec.id,
            snap.step + 1,
            action,
            job,
            build.id,
        )
        return build

    # --- continuous deployment -------------------------------------------------------------

    def on_build_finished(self, build: BuildRecord) -> None:
        """A green build on an ``auto`` branch becomes a release and starts rolling out.

        Runs inside the request that reported the build's last job, so it never raises:
        a missing or broken plan is logged (``farm rollout lint`` says why).
        """
        if build.status != BuildStatus.SUCCESS or build.parent_build_id is not None:
            return  # deploy and check jobs' own builds never deploy anything
        try:
            found = plan_text(self.engine.blobs, build)
            if found is None:
                return
            plan = load_plan(found[1], found[0])
            if not matches_auto(plan, build.ref):
                return
            version = _pipeline_version(build) or auto_version(plan, build.ref, build.id)
            _, created = self.engine.registry.create_release(build.id, version)
            if not created:
                # The build finished again (a manual job played after it was green): its
                # release exists and was rolled out once; never start a second rollout.
                return
            rec = self.engine.start(build.project, version, actor=CD_ACTOR, queue=True)
            log.info(
                "build %s on %s: released %s, rollout %s", build.id, build.ref, version, rec.id
            )
        except Exception as exc:
            log.error("continuous deployment of build %s failed: %s", build.id, exc)


def _pipeline_version(build: BuildRecord) -> str | None:
    """A version the pipeline names itself (a ``FARM_RELEASE_VERSION`` variable)."""
    for job in build.jobs:
        value = job.spec.variables.get("FARM_RELEASE_VERSION")
        if value:
            return value
    return build.variables.get("FARM_RELEASE_VERSION") or None
