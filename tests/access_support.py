"""Test clients and servers that carry tokens: every route of chronoml needs a principal."""

from __future__ import annotations

import uuid
from typing import Any


def admin_client(app: Any, role: str = "admin", **kw: Any) -> Any:
    """A test client of ``app`` that sends a fresh token of ``role`` (admin by default).

    It talks to ``http://127.0.0.1`` so the Host header is one the server accepts.
    """
    import uuid

    from starlette.testclient import TestClient

    from chronoml.auth.access import create_token

    gw = app.state.gateway
    secret, _ = create_token(gw.cm.store, f"test-{role}-{uuid.uuid4().hex[:8]}", role, by="tests")
    headers = {"Authorization": f"Bearer {secret}", **kw.pop("headers", {})}
    return TestClient(app, base_url="http://127.0.0.1", headers=headers, **kw)


def token_for(settings: Any, role: str = "admin") -> dict[str, str]:
    """An Authorization header with a new token of ``role`` in ``settings``' store
    (for servers started in processes of their own)."""
    from chronoml.auth.access import create_token
    from chronoml.service import Chronoml

    cm = Chronoml.open(settings)
    try:
        secret, _ = create_token(cm.store, f"test-{role}-{uuid.uuid4().hex[:8]}", role, by="tests")
    finally:
        cm.close()
    return {"Authorization": f"Bearer {secret}"}
