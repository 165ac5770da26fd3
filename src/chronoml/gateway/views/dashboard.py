"""The web dashboard: endpoints, what is live with lineage, and their timelines."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jinja2 import Environment, PackageLoader, select_autoescape

if TYPE_CHECKING:
    from chronoml.service import Chronoml

_env = Environment(loader=PackageLoader("chronoml", "templates"), autoescape=select_autoescape())


def render(cm: Chronoml) -> str:
    endpoints = []
    for ep in cm.endpoints():
        hist = cm.history(ep["endpoint"])["events"][-20:]
        endpoints.append({**ep, "history": list(reversed(hist))})
    return _env.get_template("dashboard.html").render(endpoints=endpoints, verify=cm.verify())
