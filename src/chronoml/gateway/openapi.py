"""The OpenAPI 3.1 document of the server, built from the routes and their access rules.

Every route the app serves is in it (a test checks both ways), with its path
and query parameters, its JSON body, the role it needs and the one error
shape. ``/docs`` renders it with a small page shipped in the package.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

from chronoml.gateway.rules import ACTIONS, Rule

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": "string"},
            },
        }
    },
}
V2_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
TIME = {"type": "string", "description": "ISO 8601; without an offset it is UTC"}
WINDOW = {"type": "string", "pattern": r"^[0-9.]+[smhdw]$", "description": "e.g. 15m, 1h, 7d"}
WINDOW_PARAMS = {"window": WINDOW, "from": TIME, "to": TIME, "variant": {"type": "string"}}

OBJECT = {"type": "object"}
SCORING = {
    "type": "object",
    "description": "one of MLflow's scoring formats: dataframe_split, dataframe_records, "
    "instances or inputs (also text/csv with a header row)",
    "minProperties": 1,
    "maxProperties": 1,
}

# query parameters and bodies, by (method, path); the rest take none
QUERY: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/v1/snapshots"): {"name": {"type": "string"}},
    ("GET", "/v1/endpoints/{endpoint}"): {"at": TIME},
    ("GET", "/ui/endpoints/{endpoint}"): {"at": TIME, "window": {"type": "string"}},
    ("GET", "/ui/compare/{endpoint}"): {
        "a": {"type": "string"},
        "b": {"type": "string"},
        "at": TIME,
        "window": {"type": "string"},
    },
    ("GET", "/v1/endpoints/{endpoint}/drift"): {
        **WINDOW_PARAMS,
        "method": {"type": "string"},
        "threshold": {"type": "string"},
        "format": {"type": "string", "enum": ["json", "html"]},
        "by": {"type": "string"},
        "bins": {"type": "integer", "minimum": 2, "maximum": 100},
    },
    ("GET", "/v1/endpoints/{endpoint}/quality"): {
        **WINDOW_PARAMS,
        "by": {"type": "string"},
        "bins": {"type": "integer", "minimum": 2, "maximum": 100},
        "estimate": {"type": "string", "enum": ["true", "false"]},
        "reference_from": TIME,
        "reference_to": TIME,
    },
    ("GET", "/v1/endpoints/{endpoint}/fairness"): {
        **WINDOW_PARAMS,
        "attribute": {"type": "string"},
        "version": {"type": "string"},
        "positive_class": {"type": "string"},
    },
    ("GET", "/v1/endpoints/{endpoint}/experiment"): {
        "window": WINDOW,
        "from": TIME,
        "to": TIME,
        "metric": {"type": "string"},
        "by": {"type": "string"},
        "bins": {"type": "integer", "minimum": 2, "maximum": 100},
    },
    ("GET", "/v1/endpoints/{endpoint}/importance"): {
        "window": WINDOW,
        "from": TIME,
        "to": TIME,
        "version": {"type": "string"},
        "sample": {"type": "integer", "minimum": 1, "maximum": 10000},
        "format": {"type": "string", "enum": ["json", "html"]},
    },
    ("GET", "/v1/endpoints/{endpoint}/monitoring"): {"metric": {"type": "string"}},
    ("POST", "/v1/endpoints/{endpoint}/predict"): {"explain": {"type": "string"}},
    ("POST", "/v1/endpoints/{endpoint}/rollback"): {"reason": {"type": "string"}},
    ("GET", "/v1/jobs"): {
        "endpoint": {"type": "string"},
        "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
    },
    ("GET", "/v1/jobs/{id}"): {"log": {"type": "string", "enum": ["true", "false"]}},
    ("GET", "/v1/audit/reads"): {
        "decision": {"type": "string"},
        "principal": {"type": "string"},
        "since": TIME,
        "limit": {"type": "integer", "minimum": 1, "maximum": 10000},
    },
}
MODES = {"type": "string", "enum": ["keep", "hash", "drop"]}
BODY: dict[tuple[str, str], dict[str, Any]] = {
    ("PUT", "/v1/endpoints/{endpoint}/privacy"): {
        "type": "object",
        "description": "rules set on top of the policy (keep removes one): input features, "
        "context attributes, and whether the unit key is hashed",
        "properties": {
            "features": {"type": "object", "additionalProperties": MODES},
            "context": {"type": "object", "additionalProperties": MODES},
            "unit_key": {"type": "string", "enum": ["keep", "hash"]},
        },
    },
    ("POST", "/v1/erasures"): {
        "type": "object",
        "required": ["unit"],
        "properties": {"unit": {"type": "string", "minLength": 1}},
    },
    ("POST", "/v1/endpoints/{endpoint}/predict"): SCORING,
    ("POST", "/invocations"): SCORING,
    ("POST", "/v2/models/{endpoint}/infer"): {
        "type": "object",
        "required": ["inputs"],
        "properties": {"inputs": {"type": "array", "items": OBJECT}},
    },
    ("PUT", "/v1/endpoints/{endpoint}"): {
        "type": "object",
        "description": "a deploy ({model_uri, weight?, shadow?, variant?, canary?}) or a split "
        "({weights: {variant: percent}})",
        "properties": {
            "model_uri": {"type": "string"},
            "weight": {"type": "number"},
            "shadow": {"type": "boolean"},
            "variant": {"type": "string"},
            "allow_unlinked_data": {"type": "boolean"},
            "canary": {},
            "weights": OBJECT,
        },
    },
    ("POST", "/v1/feedback"): {
        "type": "object",
        "properties": {
            "decision_id": {"type": "string"},
            "label": {},
            "time": TIME,
            "update": {"type": "boolean"},
            "labels": {"type": "array", "items": OBJECT},
        },
    },
    ("PUT", "/v1/alerts/{name}"): {
        "type": "object",
        "description": "an alert rule: metric, op, threshold, window, cooldown, actions",
    },
    ("POST", "/v1/endpoints/{endpoint}/replay"): {
        "type": "object",
        "properties": {"from": TIME, "to": TIME, "window": WINDOW, "sample": {"type": "integer"}},
    },
    ("POST", "/v1/endpoints/{endpoint}/backtest"): {
        "type": "object",
        "required": ["model_uri"],
        "properties": {"model_uri": {"type": "string"}, "from": TIME, "to": TIME},
    },
    ("PUT", "/v1/endpoints/{endpoint}/retraining"): {
        "type": "object",
        "required": ["entrypoint", "data"],
        "properties": {"entrypoint": OBJECT, "data": OBJECT, "policy": OBJECT},
    },
    ("POST", "/v1/endpoints/{endpoint}/jobs/{id}/approve"): {
        "type": "object",
        "properties": {"reject": {"type": "boolean"}, "reason": {"type": "string"}},
    },
    ("POST", "/v1/tokens"): {
        "type": "object",
        "required": ["name", "role"],
        "properties": {
            "name": {"type": "string"},
            "role": {
                "type": "string",
                "enum": ["viewer", "auditor", "predictor", "operator", "approver", "admin"],
            },
            "endpoint": {"type": "string"},
            "expires": {"type": "string"},
        },
    },
}


def _roles(rule: Rule | None) -> str:
    if rule is None:
        return "Public."
    actions = " or ".join(a.value for a in rule.actions)
    where = {"endpoint": "on the endpoint", "some": "on some endpoint", "global": "on *"}[
        rule.scope
    ]
    return f"Needs a role allowing {actions} {where}."


def spec(version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), rule in sorted(ACTIONS.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        params: list[dict[str, Any]] = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in re.findall(r"{(\w+)}", path)
        ]
        for name, schema in QUERY.get((method, path), {}).items():
            params.append({"name": name, "in": "query", "required": False, "schema": schema})
        error = V2_ERROR if path.startswith("/v2/") else ERROR
        errors = {"description": "an error, naming the field when one is to blame",
                  "content": {"application/json": {"schema": error}}}  # fmt: skip
        op: dict[str, Any] = {
            "summary": f"{method} {path}",
            "description": _roles(rule),
            "parameters": params,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": {}}}},
                "4XX": errors,
                "5XX": errors,
            },
        }
        if rule is not None:
            op["security"] = [{"bearer": []}]
        body = BODY.get((method, path))
        if body is not None:
            content: dict[str, Any] = {"application/json": {"schema": body}}
            op["requestBody"] = {"required": True, "content": content}
        paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "chronoml",
            "version": version,
            "description": "Which model was live, trained on what, decided what, and why.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a chronoml token (chronoml token create) or an OIDC JWT",
                }
            }
        },
    }


def docs_page() -> str:
    """The ``/docs`` page: renders ``/openapi.json`` with no assets from elsewhere."""
    return resources.files("chronoml.gateway").joinpath("static/docs.html").read_text()
