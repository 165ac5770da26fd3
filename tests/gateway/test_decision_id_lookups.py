"""Ids that are not UUID text, asked for through the API: the same 4xx on both stores (on
PostgreSQL no uuid column can hold them, and asking never fails a statement)."""

from __future__ import annotations

from typing import Any

import pytest

from access_support import admin_client
from chronoml.gateway.app import create_app

BAD = ["not-a-uuid", "0190A000-0000-7000-8000-000000000001", "x" * 36]


@pytest.mark.parametrize("bad", BAD)
def test_a_malformed_id_is_a_404_never_a_500(cm: Any, settings: Any, bad: str) -> None:
    with admin_client(create_app(settings, cm)) as c:
        for path in ("", "/explanation", "/proof"):
            r = c.get(f"/v1/decisions/{bad}{path}")
            assert r.status_code == 404, (path, r.status_code, r.text)
        r = c.post("/v1/feedback", json={"decision_id": bad, "label": 1})
        assert r.status_code == 404, r.text
        assert r.json()["error"]["field"] == "decision_id"
