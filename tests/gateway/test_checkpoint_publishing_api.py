"""The server publishes its checkpoints: timestamped by an RFC 3161 authority and POSTed to a
webhook, both on loopback (allowed by name); GET /v1/audit/verify reports on them."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from access_support import admin_client
from chronoml.evidence import timestamps as TS
from chronoml.gateway.app import create_app
from tsa_support import Authority, Receiver, serve_authority, serve_receiver


@pytest.fixture
def tsa() -> Authority:
    return Authority()


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def client(
    cm: Any, settings: Any, tmp_path: Path, tsa: Authority, receiver: Receiver
) -> Iterator[TestClient]:
    with serve_authority(tsa) as tsa_url, serve_receiver(receiver) as port:
        s = replace(
            settings,
            checkpoint_interval_s=0.2,
            checkpoint_dir=tmp_path / "published",
            checkpoint_webhooks=(f"http://127.0.0.1:{port}/checkpoints",),
            tsa_url=tsa_url,
            allow_webhook_hosts=("127.0.0.1",),
        )
        cm.settings = s
        with admin_client(create_app(s, cm)) as c:
            yield c


def test_the_server_timestamps_and_posts_each_checkpoint(
    client: TestClient, tsa: Authority, receiver: Receiver, tmp_path: Path
) -> None:
    deadline = time.monotonic() + 30
    while not receiver.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert receiver.requests, "no checkpoint reached the webhook"
    payload = json.loads(receiver.requests[0][2])
    token = base64.b64decode(payload["timestamp"])
    stamp = TS.verify(token, payload["note"].encode(), [tsa.ca])
    assert stamp.chained and stamp.authority == "CN=chronoml test TSA"
    published = tmp_path / "published"
    assert any(published.glob("*.tsr"))
    v = client.get("/v1/audit/verify").json()
    assert v["ok"] is True, v
    assert v["timestamps"]["checked"] >= 1 and v["timestamps"]["chained"] is False
    assert v["evidence"]["checkpoints"] and all(c["signed"] for c in v["evidence"]["checkpoints"])
