"""REST routes that close the loop: experiments, retraining configuration, jobs, approvals."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chronoml.auth import AuthError
from chronoml.auth.policy import check_retraining, data_roots, redacted_retraining
from chronoml.errors import BadQuery, NotFound, Refused
from chronoml.fairness.guardrails import GuardrailError
from chronoml.gateway.access import actor_of, principal_of
from chronoml.gateway.responses import JSON, error, for_error
from chronoml.monitor.experiments import ExperimentError, experiment
from chronoml.monitor.slices import SliceError
from chronoml.retrain.fair_selection import check_policy
from chronoml.retrain.runner import JobRunner, approve
from chronoml.store import jobs as J
from chronoml.store import retrain_configs as RC
from chronoml.timeutil import now_us, parse_duration, parse_time
from chronoml.window import Window

if TYPE_CHECKING:
    from chronoml.gateway.gateway import Gateway


def routes(gw: Gateway) -> list[Route]:
    async def known(endpoint: str) -> Response | None:
        try:
            await run_in_threadpool(gw.cm.status, endpoint)
        except NotFound as exc:
            return error(404, "not_found", str(exc))
        return None

    async def get_experiment(request: Request) -> Response:

        endpoint = request.path_params["endpoint"]
        q = request.query_params
        try:
            end = parse_time(q["to"]) if q.get("to") else now_us()
            if q.get("from"):
                start = parse_time(q["from"])
            else:
                start = end - parse_duration(q.get("window", "1h"))
            kw: dict[str, Any] = {
                "metric": q.get("metric", "accuracy"),
                "alpha": float(q.get("alpha", 0.05)),
                "min_samples": int(q.get("min_samples", 100)),
                "equivalence_margin": float(q["margin"]) if q.get("margin") else None,
                "higher_is_better": False if q.get("lower_is_better") == "true" else None,
                "by": q.get("by") or None,
            }
            if q.get("bins"):
                kw["bins"] = int(q["bins"])
        except ValueError as exc:
            return error(400, "bad_query", str(exc))
        if not 1 <= kw["min_samples"] <= 10**9:
            return error(400, "bad_query", "min_samples must be between 1 and 1e9", "min_samples")
        try:
            Window(start, end)
        except BadQuery as exc:
            return error(400, "bad_query", exc.message, exc.field)
        missing = await known(endpoint)
        if missing is not None:
            return missing
        try:
            report = await run_in_threadpool(
                lambda: experiment(gw.cm.store, endpoint, start, end, **kw)
            )
        except ExperimentError as exc:
            return error(400, "bad_query", exc.message, exc.field)
        except SliceError as exc:
            return for_error(exc)
        except ValueError as exc:  # alpha or min_samples out of range
            return error(400, "bad_query", str(exc))
        return JSON(report)

    async def get_retraining(request: Request) -> Response:

        endpoint = request.path_params["endpoint"]
        cfg = await run_in_threadpool(RC.get, gw.cm.store, endpoint)
        if cfg is None:
            return error(404, "not_found", f"no retraining configured for {endpoint!r}")
        return JSON(redacted_retraining(cfg.to_dict()))

    async def put_retraining(request: Request) -> Response:
        endpoint = request.path_params["endpoint"]
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return error(400, "bad_json", f"body is not valid JSON: {exc}")
        if not isinstance(body, dict):
            return error(400, "bad_body", "body must be a JSON object")
        missing = await known(endpoint)
        if missing is not None:
            return missing
        try:
            cfg = RC.RetrainConfig.from_dict({**body, "endpoint": endpoint})
            check_retraining(
                cfg,
                allow_project_sources=gw.settings.allow_project_sources,
                data_roots=data_roots(gw.settings),
            )
            check_policy(cfg.policy)
        except (RC.ConfigError, GuardrailError) as exc:
            return error(422, "bad_input", exc.message, exc.field)
        except AuthError as exc:
            return error(422, "bad_input", exc.message, exc.field)
        await run_in_threadpool(RC.put, gw.cm.store, cfg)
        return JSON(redacted_retraining(cfg.to_dict()))

    async def post_retrain(request: Request) -> Response:
        endpoint = request.path_params["endpoint"]
        missing = await known(endpoint)
        if missing is not None:
            return missing
        runner = gw.jobs if isinstance(gw.jobs, JobRunner) else JobRunner(gw.cm)
        try:
            job, created = await run_in_threadpool(runner.start_job, endpoint, actor_of(request))
        except NotFound as exc:
            return error(404, "not_configured", str(exc))
        if created and isinstance(gw.jobs, JobRunner):
            gw.jobs.wake()
        return JSON({"created": created, "job": job.to_dict()}, status_code=202 if created else 200)

    async def list_jobs(request: Request) -> Response:

        endpoint = request.query_params.get("endpoint")
        try:
            limit = int(request.query_params.get("limit", 50))
        except ValueError:
            return error(400, "bad_query", "limit must be an integer", "limit")
        if not 1 <= limit <= 1000:
            return error(400, "bad_query", "limit must be between 1 and 1000", "limit")
        found = await run_in_threadpool(J.listing, gw.cm.store, endpoint, limit)
        return JSON({"jobs": [j.to_dict() for j in found]})

    async def get_job(request: Request) -> Response:

        try:
            job_id = int(request.path_params["id"])
        except ValueError:
            return error(404, "not_found", "job ids are integers")
        job = await run_in_threadpool(J.get, gw.cm.store, job_id)
        if job is None:
            return error(404, "not_found", f"unknown job {job_id}")
        steps = await run_in_threadpool(J.steps, gw.cm.store, job_id)
        with_log = request.query_params.get("log") == "true"
        return JSON({**job.to_dict(log=with_log), "steps": steps})

    async def post_approve(request: Request) -> Response:
        endpoint = request.path_params["endpoint"]
        try:
            job_id = int(request.path_params["id"])
        except ValueError:
            return error(404, "not_found", "job ids are integers")
        raw = await request.body()
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError as exc:
            return error(400, "bad_json", f"body is not valid JSON: {exc}")
        if not isinstance(body, dict):
            return error(400, "bad_body", "body must be a JSON object")
        reject = bool(body.get("reject", False))
        reason = body.get("reason")
        job = await run_in_threadpool(J.get, gw.cm.store, job_id)
        if job is not None and job.status == "awaiting_approval":
            # whoever started the job may not judge its challenger
            started_by = str((job.trigger or {}).get("actor") or "").split("@", 1)[0]
            principal_of(request).require_not_starter(started_by)
        try:
            await run_in_threadpool(
                lambda: approve(
                    gw.cm,
                    endpoint,
                    job_id,
                    actor_of(request),
                    reject=reject,
                    reason=str(reason) if reason else None,
                )
            )
        except NotFound as exc:
            return error(404, "not_found", str(exc))
        except Refused as exc:
            return error(409, "not_awaiting_approval", exc.message, exc.field)
        runner = gw.jobs if isinstance(gw.jobs, JobRunner) else JobRunner(gw.cm)
        job = await run_in_threadpool(runner.advance, job_id)
        await run_in_threadpool(gw.live.refresh)
        return JSON({"job": job.to_dict()})

    return [
        Route("/v1/endpoints/{endpoint}/experiment", get_experiment, methods=["GET"]),
        Route("/v1/endpoints/{endpoint}/retraining", get_retraining, methods=["GET"]),
        Route("/v1/endpoints/{endpoint}/retraining", put_retraining, methods=["PUT"]),
        Route("/v1/endpoints/{endpoint}/retrain", post_retrain, methods=["POST"]),
        Route("/v1/endpoints/{endpoint}/jobs/{id}/approve", post_approve, methods=["POST"]),
        Route("/v1/jobs", list_jobs, methods=["GET"]),
        Route("/v1/jobs/{id}", get_job, methods=["GET"]),
    ]
