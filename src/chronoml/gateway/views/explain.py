"""REST routes for explanations, replay, backtests and global importance.

``create_app`` adds :func:`routes`; the predict handler calls :func:`inline`
and :func:`store_inline` for ``?explain=true``.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from chronoml.domain.explanation import NotExplainable
from chronoml.errors import InvalidInput, NotFound, Refused, StoreError
from chronoml.explain.backtest import backtest
from chronoml.explain.decisions import TooManyRows, check_rows, explain_decision, importance
from chronoml.explain.importance_html import render
from chronoml.explain.models import Models
from chronoml.explain.replay import ModelFailed, replay_decision, replay_range
from chronoml.gateway.responses import JSON, error
from chronoml.registry.archive import ArtifactError, DecisionModelError
from chronoml.store import explanations as SE
from chronoml.timeutil import iso, now_us, parse_duration, parse_time

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from chronoml.domain.explanation import Explanation
    from chronoml.explain.base import Explainer
    from chronoml.gateway.gateway import Gateway
    from chronoml.registry.models import LoadedModel

log = logging.getLogger("chronoml.explain.explainers")
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"", "false", "0", "no"})
_views: weakref.WeakKeyDictionary[Gateway, _Views] = weakref.WeakKeyDictionary()


def _error(status: int, code: str, message: str, field: str | None = None) -> Response:
    return error(status, code, message, field)


def _json(body: Any, status: int = 200) -> Response:
    return JSON(body, status_code=status)


# rows an explanation or replay request may ask for at most
MAX_SAMPLE = 100_000


def routes(gw: Gateway) -> list[Route]:
    """The routes of this module, bound to ``gw``."""
    v = _of(gw)
    return [
        Route("/v1/decisions/{id}/explanation", v.explanation, methods=["GET"]),
        Route("/v1/decisions/{id}/replay", v.replay, methods=["POST"]),
        Route("/v1/endpoints/{endpoint}/replay", v.replay_range, methods=["POST"]),
        Route("/v1/endpoints/{endpoint}/backtest", v.backtest, methods=["POST"]),
        Route("/v1/endpoints/{endpoint}/importance", v.importance, methods=["GET"]),
    ]


def _of(gw: Gateway) -> _Views:
    v = _views.get(gw)
    if v is None:
        v = _views[gw] = _Views(gw)
    return v


# Up to this many rows, a tree model's explanations are computed in the
# model's own thread right after its predict (no extra thread hand-off);
# larger requests and the model-agnostic explainer compute them first, in
# the thread pool, so a batch's other requests are not held up.
IN_BATCH_ROWS = 16


class Inline:
    """A request's explanations for ``?explain=true``, committed with its decisions.

    The decision log calls :meth:`rows` with the decisions' ids (in the
    model's thread, within the batch that decides them) and commits what it
    returns in the same transaction; :meth:`response` is what the answer adds.
    """

    def __init__(
        self,
        explainer: Explainer,
        columns: list[str],
        mat: np.ndarray[Any, Any] | None,
        frame: pd.DataFrame | None,
        explanations: list[Explanation] | None = None,
    ) -> None:
        self.explainer = explainer
        self.columns = columns
        self.mat = mat
        self.frame = frame
        self.explanations = explanations
        self.created_at = now_us()
        self.error: str | None = None

    def compute(self) -> list[Explanation]:
        if self.explanations is None:
            if self.frame is not None:
                self.explanations = self.explainer.explain(self.frame)
            else:
                assert self.mat is not None
                self.explanations = self.explainer.explain_matrix(self.mat, self.columns)
        return self.explanations

    def rows(self, ids: list[str]) -> list[tuple[Any, ...]]:
        try:
            return SE.tuples(ids, self.compute(), self.created_at)
        except Exception as exc:  # the decisions still stand; the answer says why
            log.warning("explaining %d decisions failed: %s", len(ids), exc)
            self.error = str(exc) or type(exc).__name__
            return []

    def response(self, ids: list[str]) -> dict[str, Any]:
        if self.error is not None or self.explanations is None:
            return {
                "explanations": None,
                "explanation_error": f"logged without explanations: {self.error}",
            }
        created = iso(self.created_at)
        return {
            "explanations": [
                {**e.to_dict(did), "created_at": created}
                for did, e in zip(ids, self.explanations, strict=True)
            ]
        }


async def inline(
    gw: Gateway,
    flag: str | None,
    model: LoadedModel,
    mat: np.ndarray[Any, Any] | None,
    frame: pd.DataFrame | None,
) -> Inline | Response | None:
    """For ``?explain=true`` (``flag`` is its value): how the request's rows get
    explained, settled before logging.

    The rows come as the predict path parsed them: a float matrix in schema
    order, or a frame. None without the flag; an error response (and
    nothing logged) for a bad flag or a model that cannot be explained.
    """
    if flag is None or flag.strip().lower() in _FALSE:
        return None
    if flag.strip().lower() not in _TRUE:
        return _error(400, "bad_query", f"explain must be true or false, not {flag!r}", "explain")
    models = _of(gw).models
    n = len(frame) if frame is not None else len(mat) if mat is not None else 0
    columns = [c for c, _ in model.schema] if model.schema else list(getattr(frame, "columns", []))
    try:
        explainer = models.cached_explainer(model)
        if explainer is None:
            explainer = await run_in_threadpool(models.explainer, model)
        check_rows(explainer, n)
        job = Inline(explainer, columns, mat, frame)
        if explainer.per_row_cost == "high" or n > IN_BATCH_ROWS:
            await run_in_threadpool(job.compute)
        return job
    except NotExplainable as exc:
        return _error(422, "not_explainable", exc.message, "explain")
    except TooManyRows as exc:
        return _error(413, "too_many_rows", str(exc), "explain")
    except ArtifactError as exc:
        return _artifact_error(exc)


def log_rows(explained: Inline | None) -> Callable[[list[str]], list[tuple[Any, ...]]] | None:
    """For the decision log: the explanation rows of the decisions' ids (None without)."""
    return explained.rows if explained is not None else None


def response(ids: list[str], explained: Inline | None) -> dict[str, Any]:
    """What ``?explain=true`` adds to the predict answer."""
    return explained.response(ids) if explained is not None else {}


def _artifact_error(exc: ArtifactError) -> Response:
    if exc.reason == "missing":
        return _error(410, "artifact_missing", exc.message)
    if exc.reason == "tampered":
        return _error(409, "artifact_tampered", exc.message)
    return _error(500, "artifact_unloadable", exc.message)


class _Views:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.models = Models(gw.cm, serving=self._serving)

    def _serving(self, digest: str) -> LoadedModel | None:
        for ep in list(self.gw.live.endpoints.values()):
            for m in ep.models.values():
                if m.ref.artifact_digest == digest:
                    return m
        return None

    async def _run(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Response:
        try:
            return _json(await run_in_threadpool(lambda: fn(*args, **kw)))
        except NotFound as exc:
            return _error(404, "not_found", str(exc))
        except Refused as exc:
            return _error(422, "refused", exc.message, exc.field)
        except ArtifactError as exc:
            return _artifact_error(exc)
        except DecisionModelError as exc:
            return _error(409, "lineage_broken", str(exc))
        except NotExplainable as exc:
            return _error(422, "not_explainable", exc.message)
        except ModelFailed as exc:
            return _error(500, "model_error", str(exc))
        except StoreError as exc:
            return _error(503, "store_unavailable", str(exc))

    async def explanation(self, request: Request) -> Response:
        return await self._run(explain_decision, self.gw.cm, self.models, request.path_params["id"])

    async def replay(self, request: Request) -> Response:
        return await self._run(replay_decision, self.gw.cm, self.models, request.path_params["id"])

    async def replay_range(self, request: Request) -> Response:
        spec = await _spec(request, {"from", "to", "window", "sample", "seed"})
        if isinstance(spec, Response):
            return spec
        rng = _range(spec)
        if isinstance(rng, Response):
            return rng
        sample = spec.get("sample")
        seed = spec.get("seed", 0)
        for name, v in (("sample", sample), ("seed", seed)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                return _error(422, "bad_input", f"{name} must be an integer", name)
        if sample is not None and not 1 <= sample <= MAX_SAMPLE:
            return _error(422, "bad_input", f"sample must be between 1 and {MAX_SAMPLE}", "sample")
        if not 0 <= seed < 2**32:
            return _error(422, "bad_input", "seed must be between 0 and 2**32 - 1", "seed")
        return await self._run(
            replay_range,
            self.gw.cm,
            self.models,
            request.path_params["endpoint"],
            *rng,
            sample=sample,
            seed=seed,
        )

    async def backtest(self, request: Request) -> Response:
        spec = await _spec(request, {"model_uri", "from", "to", "window"})
        if isinstance(spec, Response):
            return spec
        uri = spec.get("model_uri")
        if not isinstance(uri, str) or not uri:
            return _error(422, "bad_input", "give model_uri, the candidate model", "model_uri")
        rng = _range(spec)
        if isinstance(rng, Response):
            return rng
        return await self._run(
            backtest, self.gw.cm, self.models, request.path_params["endpoint"], uri, *rng
        )

    async def importance(self, request: Request) -> Response:
        q = request.query_params
        rng = _range(dict(q))
        if isinstance(rng, Response):
            return rng
        sample: int | None = None
        if q.get("sample"):
            try:
                sample = int(q["sample"])
            except ValueError:
                return _error(400, "bad_query", "sample must be an integer", "sample")
            if not 1 <= sample <= MAX_SAMPLE:
                return _error(
                    400, "bad_query", f"sample must be between 1 and {MAX_SAMPLE}", "sample"
                )
        fmt = q.get("format", "json")
        if fmt not in ("json", "html"):
            return _error(400, "bad_query", "format must be json or html", "format")
        resp = await self._run(
            importance,
            self.gw.cm,
            self.models,
            request.path_params["endpoint"],
            *rng,
            version=q.get("version"),
            sample=sample,
        )
        if fmt == "html" and resp.status_code == 200:
            return HTMLResponse(render(orjson.loads(bytes(resp.body))))
        return resp


async def _spec(request: Request, allowed: set[str]) -> dict[str, Any] | Response:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        spec = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _error(400, "bad_json", f"body is not valid JSON: {exc}")
    if not isinstance(spec, dict):
        return _error(400, "bad_body", "body must be a JSON object")
    unknown = sorted(set(spec) - allowed)
    if unknown:
        return _error(422, "bad_input", f"unknown field {unknown[0]!r}", unknown[0])
    return spec


def _range(spec: dict[str, Any], default_window: str = "1h") -> tuple[int, int] | Response:
    """``from``/``to`` (ISO 8601) or ``window`` back from ``to`` (default: the last hour)."""
    try:
        for k in ("from", "to", "window"):
            if spec.get(k) is not None and not isinstance(spec[k], str):
                raise InvalidInput(f"{k} must be a string", k)
        end = parse_time(spec["to"]) if spec.get("to") else now_us()
        if spec.get("from"):
            start = parse_time(spec["from"])
        else:
            try:
                start = end - parse_duration(spec.get("window") or default_window)
            except ValueError as exc:
                raise InvalidInput(str(exc), "window") from None
    except InvalidInput as exc:
        return _error(400, "bad_query", exc.message, exc.field)
    except ValueError as exc:
        field = "to" if spec.get("to") and not _parses(spec["to"]) else "from"
        return _error(400, "bad_time", str(exc), field)
    if start >= end:
        return _error(400, "bad_query", "the range's start must be before its end", "from")
    return start, end


def _parses(s: str) -> bool:
    try:
        parse_time(s)
    except ValueError:
        return False
    return True
