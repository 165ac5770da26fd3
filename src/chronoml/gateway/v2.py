"""Open Inference Protocol (KServe v2) over chronoml endpoints.

``/v2/models/{endpoint}/infer`` takes either one 2-D tensor of all input
columns in signature order (what tritonclient and KServe's sklearn server
send, e.g. ``input-0`` of shape ``[n, k]``), or one 1-D tensor per column
named after it (MLServer's pandas codec). Requests go through the same
routing, micro-batching and durable log as ``/v1/.../predict``; the
decision ids and the variant come back in the response's ``parameters``.
Errors follow the protocol: ``{"error": "message"}``.
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd
import yaml
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chronoml.domain import codec, routing
from chronoml.errors import InvalidInput, StoreError
from chronoml.gateway import batching
from chronoml.registry.models import LoadedModel
from chronoml.timeutil import now_us

if TYPE_CHECKING:
    from chronoml.gateway.gateway import Gateway

_DATATYPES = {"float": "FP64", "int": "INT64", "bool": "BOOL", "string": "BYTES"}
_NUMERIC = frozenset({"FP64", "FP32", "FP16", "INT64", "INT32", "INT16", "INT8", "UINT8",
                      "UINT16", "UINT32", "UINT64"})  # fmt: skip


def _json(body: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
    )


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status)


class V2Error(ValueError):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def rows_from_tensors(req: Any, model: LoadedModel) -> tuple[np.ndarray[Any, Any] | None, Any, int]:
    """The request's tensors as rows for ``model``: (float matrix | None, frame | None, n)."""
    if not isinstance(req, dict) or not isinstance(req.get("inputs"), list) or not req["inputs"]:
        raise V2Error("the request needs 'inputs': a list of tensors")
    schema = model.schema
    tensors = req["inputs"]
    for i, t in enumerate(tensors):
        if not isinstance(t, dict) or not {"name", "shape", "datatype", "data"} <= set(t):
            raise V2Error(f"inputs[{i}] needs name, shape, datatype and data")
        if not isinstance(t["shape"], list) or not all(isinstance(d, int) for d in t["shape"]):
            raise V2Error(f"inputs[{i}].shape must be a list of integers")
    names = [c for c, _ in schema] if schema is not None else None
    # one [n, k] tensor of every column, unless it is named after a column
    if (
        len(tensors) == 1
        and len(tensors[0]["shape"]) == 2
        and tensors[0]["name"] not in (names or ())
    ):
        t = tensors[0]
        n, k = t["shape"]
        if names is None:
            raise V2Error("this model has no input signature: send one tensor per named column")
        if k != len(names):
            raise V2Error(f"{t['name']} has {k} columns; the model takes {len(names)}: {names}")
        flat = _flat(t, n * k)
        if all(kind == "float" for _, kind in schema or ()) and t["datatype"] in _NUMERIC:
            mat = _float_matrix(flat, names).reshape(n, k)
            return mat, None, n
        cols = {c: flat[j::k] for j, c in enumerate(names)}
    else:
        cols = {}
        n = -1
        for t in tensors:
            size = t["shape"][0] if t["shape"] else 1
            if len(t["shape"]) > 2 or (len(t["shape"]) == 2 and t["shape"][1] != 1):
                raise V2Error(f"tensor {t['name']} must have shape [n] or [n, 1]")
            if n >= 0 and size != n:
                raise V2Error(f"tensor {t['name']} has {size} rows, the others {n}")
            n = size
            cols[str(t["name"])] = _flat(t, size)
    try:
        frame = codec.conform(cols, schema)
    except InvalidInput as exc:
        raise V2Error(exc.message, 422 if exc.status == 422 else 400) from None
    return None, frame, n


def _flat(t: dict[str, Any], size: int) -> list[Any]:
    data = t["data"]
    if not isinstance(data, list):
        raise V2Error(f"tensor {t['name']}: data must be a list")
    if data and isinstance(data[0], list):
        data = [v for row in data for v in (row if isinstance(row, list) else [row])]
    if len(data) != size:
        raise V2Error(
            f"tensor {t['name']}: shape {t['shape']} needs {size} values, got {len(data)}"
        )
    return list(data)


def _float_matrix(flat: list[Any], names: list[str]) -> np.ndarray[Any, Any]:
    """Row-major values of an [n, k] tensor in the model's columns; a bad one is named."""
    k = len(names)
    for i, v in enumerate(flat):
        if isinstance(v, bool) or not isinstance(v, int | float):
            what = "null" if v is None else type(v).__name__
            raise V2Error(
                f"column {names[i % k]!r} row {i // k}: expected a number, got {what}", 422
            )
    mat = np.asarray(flat, dtype=np.float64)
    if not codec.finite_in_range(mat):
        bad = int(np.flatnonzero(~np.isfinite(mat) | (np.abs(mat) > codec.LARGEST))[0])
        raise V2Error(codec.out_of_range(names[bad % k], bad // k, flat[bad]), 422)
    return mat


def output_tensor(outputs: list[Any]) -> dict[str, Any]:
    """Predictions as one tensor named ``predict``."""
    n = len(outputs)
    if outputs and isinstance(outputs[0], list):
        width = len(outputs[0])
        flat = [v for row in outputs for v in row]
        shape = [n, width]
    elif outputs and isinstance(outputs[0], dict):
        flat = [orjson.dumps(o).decode() for o in outputs]
        shape = [n]
    else:
        flat, shape = list(outputs), [n]
    if all(isinstance(v, bool) for v in flat):
        dtype = "BOOL"
    elif all(isinstance(v, int) and not isinstance(v, bool) for v in flat):
        dtype = "INT64"
    elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in flat):
        dtype = "FP64"
        flat = [None if isinstance(v, float) and math.isnan(v) else v for v in flat]
    else:
        dtype = "BYTES"
        flat = [v if isinstance(v, str) else orjson.dumps(v).decode() for v in flat]
    return {"name": "predict", "shape": shape, "datatype": dtype, "data": flat}


# MLflow signature types (column specs and tensor dtypes) as v2 datatypes
_SIGNATURE_TYPES = {
    "long": "INT64", "integer": "INT32", "double": "FP64", "float": "FP32", "boolean": "BOOL",
    "string": "BYTES", "int64": "INT64", "int32": "INT32", "float64": "FP64", "float32": "FP32",
    "bool": "BOOL", "object": "BYTES", "str": "BYTES",
}  # fmt: skip


def signature_output_type(model_dir: Path) -> str | None:
    """The v2 datatype of a model's declared output (its MLmodel signature), if it has one."""
    try:
        meta = yaml.safe_load((model_dir / "MLmodel").read_text())
        outputs = orjson.loads(meta["signature"]["outputs"])
        spec = outputs[0]
        kind = spec.get("tensor-spec", {}).get("dtype") if spec.get("type") == "tensor" else None
        return _SIGNATURE_TYPES.get(str(kind or spec.get("type")))
    except (OSError, KeyError, TypeError, IndexError, AttributeError, ValueError, yaml.YAMLError):
        return None


def probe_output_type(model: LoadedModel) -> str:
    """The datatype of the model's answer to one neutral row (zeros, empty strings).

    Not logged: it is no decision. FP64 when the model has no schema or refuses the row.
    """
    if not model.schema:
        return "FP64"
    neutral = {"float": 0.0, "int": 0, "bool": False, "string": ""}
    frame = pd.DataFrame([{c: neutral[k] for c, k in model.schema}])
    try:
        kind = np.asarray(model.predict(frame)).dtype.kind
    except Exception:  # the model's own failure on a made-up row says nothing about its type
        return "FP64"
    return {"i": "INT64", "u": "INT64", "f": "FP64", "b": "BOOL"}.get(kind, "BYTES")


def routes(gw: Gateway) -> list[Route]:
    # the datatype infer last returned per model version: what a client will really get
    returned: dict[tuple[str, str], str] = {}

    async def live(request: Request) -> Response:
        return _json({"live": True})

    async def ready(request: Request) -> Response:
        ok = gw.log is not None
        return _json({"ready": ok}, 200 if ok else 503)

    async def model_ready(request: Request) -> Response:
        e = request.path_params["endpoint"]
        le = gw.live.get(e)
        ok = le is not None and bool(le.router.answers)
        return _json({"name": e, "ready": ok}, 200 if ok else 404 if le is None else 409)

    async def _output_type(model: LoadedModel) -> str:
        key = (model.ref.name, model.ref.version)
        seen = returned.get(key)
        if seen is None:
            seen = signature_output_type(model.path)
            if seen is None:
                # no usable output signature: ask the model itself, once, off the event loop
                seen = await asyncio.to_thread(probe_output_type, model)
            returned[key] = seen
        return seen

    async def metadata(request: Request) -> Response:
        e = request.path_params["endpoint"]
        le = gw.live.get(e)
        if le is None:
            return _error(404, f"unknown or not live model {e!r}")
        answering = [v for v in le.state.variants if not v.shadow]
        first = le.models[answering[0].name] if answering else next(iter(le.models.values()))
        schema = first.schema or ()
        return _json(
            {
                "name": e,
                "versions": [f"{v.model.name}/{v.model.version}" for v in answering],
                "platform": f"mlflow_{first.flavor}",
                "inputs": [
                    {"name": c, "datatype": _DATATYPES[k], "shape": [-1, 1]} for c, k in schema
                ],
                "outputs": [{"name": "predict", "datatype": await _output_type(first), "shape": [-1]}],
                "parameters": {
                    "variants": [
                        {"variant": v.name, "weight": v.weight / 100, "shadow": v.shadow,
                         "model": v.model.name, "version": v.model.version}
                        for v in le.state.variants
                    ]
                },
            }
        )  # fmt: skip

    async def infer(request: Request) -> Response:
        arrived = time.perf_counter()
        e = request.path_params["endpoint"]
        body = await gw._body(request)
        if isinstance(body, Response):
            return body
        le = gw.live.get(e)
        if le is None:
            return _error(404, f"unknown or not live model {e!r}")
        try:
            req = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _error(400, f"body is not valid JSON: {exc}")
        unit = request.headers.get("x-chronoml-unit")
        try:
            variant = le.router.route(e, unit)
        except routing.NothingAnswers:
            return _error(409, f"model {e!r} has only shadow variants: nothing answers")
        model = le.models[variant.name]
        try:
            mat, frame, n = rows_from_tensors(req, model)
        except V2Error as exc:
            return _error(exc.status, exc.message)
        if n > gw.settings.max_rows:
            return _error(413, f"{n} rows; at most {gw.settings.max_rows} per request")
        ts = now_us()
        labels = (e, variant.name, model.ref.version)
        try:
            res = await gw.decide(le, variant.name, model, mat, frame, n, unit, ts, arrived)
        except StoreError as exc:
            gw.metrics.count(*labels, 503)
            return _error(503, f"decision log unavailable: {exc}")
        except batching.Overloaded as exc:
            gw.metrics.count(*labels, 503)
            return _error(503, f"too many requests waiting: {exc}")
        except TimeoutError:
            gw.metrics.count(*labels, 504)
            return _error(504, f"model did not answer within {gw.settings.predict_timeout_s:g} s")
        except batching.ModelFailed as exc:
            gw.metrics.count(*labels, 500)
            return _error(500, f"model {model.ref.name} v{model.ref.version} failed: {exc}")
        gw.metrics.count(*labels, 200)
        gw.metrics.observe_latency(*labels, time.perf_counter() - arrived)
        if le.shadows:
            gw._shadow(le, b"", model, mat, frame, n, unit, ts)
        tensor = output_tensor(res.outputs)
        returned[(model.ref.name, model.ref.version)] = tensor["datatype"]
        out: dict[str, Any] = {
            "model_name": e,
            "model_version": f"{model.ref.name}/{model.ref.version}",
            "outputs": [tensor],
            "parameters": {"decision_ids": res.ids, "variant": variant.name},
        }
        if isinstance(req, dict) and req.get("id") is not None:
            out["id"] = req["id"]
        return _json(out)

    return [
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2/models/{endpoint}", metadata, methods=["GET"]),
        Route("/v2/models/{endpoint}/ready", model_ready, methods=["GET"]),
        Route("/v2/models/{endpoint}/infer", infer, methods=["POST"]),
    ]
