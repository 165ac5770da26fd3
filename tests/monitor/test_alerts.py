"""Alerts: pure transitions, the engine on SQLite and PostgreSQL, webhooks through a
real receiver on loopback (signatures, retries, a restart), the REST API and the CLI."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from access_support import admin_client
from chronoml.cli.common import cli
from chronoml.domain import alerts as A
from chronoml.domain.ledger import event_summary
from chronoml.monitor import outbox as ob
from chronoml.monitor.alerts import AlertEngine, read_rule_file
from chronoml.store import Store
from chronoml.store import ledger as SL

H = 3_600_000_000  # one hour in microseconds
T0 = 1_900_000_000_000_000  # a fixed window end (2030), so tests never depend on the clock
SECRET = "s3cret"


def rule(**kw: Any) -> A.AlertRule:
    spec: dict[str, Any] = {
        "name": "drift",
        "endpoint": "cancer",
        "metric": "drifted_share",
        "op": ">=",
        "threshold": 0.5,
        "window": "1h",
        "cooldown": "30m",
        "actions": [{"type": "log"}],
    }
    spec.update(kw)
    return A.parse_rule(spec)


# --- pure transitions ----------------------------------------------------------


def test_fires_stays_firing_and_resolves() -> None:
    r = rule()
    st, ev = A.transition(r, None, 0.6, T0)
    assert ev == "fired" and st == A.AlertState(True, T0, T0, 0.6)
    st2, ev = A.transition(r, st, 0.9, T0 + H)
    assert ev is None and st2 is not None and st2.firing and st2.since == T0  # no repeat
    st3, ev = A.transition(r, st2, 0.1, T0 + 2 * H)
    assert ev == "resolved" and st3 == A.AlertState(False, T0 + 2 * H, T0, 0.1)
    st4, ev = A.transition(r, st3, 0.2, T0 + 3 * H)
    assert ev is None and st4 is not None and not st4.firing


def test_first_observation_within_limits_is_quiet() -> None:
    st, ev = A.transition(rule(), None, 0.1, T0)
    assert ev is None and st == A.AlertState(False, T0, None, 0.1)


def test_no_refire_within_the_cooldown_after_resolving() -> None:
    r = rule(cooldown="30m")
    fired, _ = A.transition(r, None, 0.7, T0)
    resolved, ev = A.transition(r, fired, 0.0, T0 + 60_000_000)
    assert ev == "resolved"
    quiet, ev = A.transition(r, resolved, 0.9, T0 + 20 * 60_000_000)  # 19 min after resolving
    assert ev is None and quiet is not None and not quiet.firing
    assert A.in_cooldown(r, quiet, T0 + 20 * 60_000_000)
    again, ev = A.transition(r, quiet, 0.9, T0 + 32 * 60_000_000)  # 31 min after
    assert ev == "fired" and again is not None and again.last_fired_at == T0 + 32 * 60_000_000


def test_without_cooldown_it_refires_at_once() -> None:
    r = rule(cooldown="0s")
    fired, _ = A.transition(r, None, 0.7, T0)
    resolved, _ = A.transition(r, fired, 0.0, T0 + 1)
    _, ev = A.transition(r, resolved, 0.7, T0 + 2)
    assert ev == "fired"


@pytest.mark.parametrize("missing", [None, float("nan"), float("inf")])
def test_a_missing_value_changes_nothing(missing: float | None) -> None:
    r = rule()
    fired, _ = A.transition(r, None, 0.7, T0)
    assert A.transition(r, fired, missing, T0 + H) == (fired, None)
    assert A.transition(r, None, missing, T0) == (None, None)


def test_a_late_window_changes_nothing() -> None:
    r = rule()
    fired, _ = A.transition(r, None, 0.7, T0)
    assert A.transition(r, fired, 0.0, T0 - H) == (fired, None)


@pytest.mark.parametrize(
    ("op", "value", "breached"),
    [(">", 0.5, False), (">=", 0.5, True), ("<", 0.4, True), ("<=", 0.6, False), ("==", 0.5, True)],
)
def test_operators(op: str, value: float, breached: bool) -> None:
    assert rule(op=op).breached(value) is breached


def test_spec_round_trips_and_hides_secrets() -> None:
    r = rule(
        metric="drift:mean radius",
        actions=[
            {"type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": SECRET},
            {"type": "ledger"},
            {"type": "retrain", "job": "cancer-weekly"},
        ],
    )
    assert A.parse_rule(r.to_dict()) == r
    assert r.window == H and r.cooldown == 30 * 60_000_000
    assert r.to_dict()["window"] == "1h" and r.to_dict()["cooldown"] == "30m"
    assert SECRET not in json.dumps(r.to_dict(redact=True))
    assert r.to_dict(redact=True)["actions"][0] == {
        "type": "webhook",
        "url": "http://127.0.0.1:9/hook",
        "signed": True,
    }
    assert A.parse_rule({**r.to_dict(), "window": None}).window is None
    assert A.format_duration(90 * 1_000_000) == "90s"
    assert A.format_duration(36 * H) == "36h" and A.format_duration(48 * H) == "2d"


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"metric": "accuracy"}, "metric", "unknown metric"),
        ({"metric": "quality:auc"}, "metric", "roc_auc"),
        ({"metric": "drift:"}, "metric", "unknown metric"),
        ({"op": "!="}, "op", "op must be one of"),
        ({"threshold": "high"}, "threshold", "finite number"),
        ({"threshold": True}, "threshold", "finite number"),
        ({"window": "soon"}, "window", "duration"),
        ({"window": "0h"}, "window", "positive"),
        ({"cooldown": "-5m"}, "cooldown", "positive"),
        ({"endpoint": "no/slash"}, "endpoint", "endpoint"),
        ({"name": "bad name"}, "name", "letters"),
        ({"actions": []}, "actions", "non-empty list"),
        ({"actions": [{"type": "email"}]}, "actions[0].type", "webhook"),
        ({"actions": [{"type": "log"}, {"type": "webhook"}]}, "actions[1].url", "http"),
        ({"actions": [{"type": "webhook", "url": "ftp://x/y"}]}, "actions[0].url", "http"),
        ({"actions": [{"type": "retrain"}]}, "actions[0].job", "job"),
        ({"actions": [{"type": "log", "url": "http://x"}]}, "actions[0].url", "no field"),
        ({"severity": "high"}, "severity", "unknown field"),
    ],
)
def test_bad_specs_name_the_field(change: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(A.RuleError) as err:
        rule(**change)
    assert err.value.field == field
    assert words in err.value.message


def test_name_in_spec_must_match_the_one_being_set() -> None:
    with pytest.raises(A.RuleError) as err:
        A.parse_rule(rule().to_dict(), name="other")
    assert err.value.field == "name"


def test_backoff_doubles_up_to_the_cap(tmp_path: Path) -> None:
    box = ob.Outbox(Store.open(f"sqlite:///{tmp_path / 'x.db'}", tmp_path))
    assert [box.backoff_us(n) / 1e6 for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert box.backoff_us(30) / 1e6 == 300
    box.store.close()


# the test receiver listens on loopback, which webhooks may reach only when allowed
LOOPBACK = ("127.0.0.1",)

# --- a real webhook receiver on loopback -----------------------------------------


class Receiver:
    """An HTTP server in a thread that records every POST and answers with scripted codes."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.codes: list[int] = []  # answered in order; 200 once they run out
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                code = receiver.codes.pop(0) if receiver.codes else 200
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(b) for _, b in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def thread_stacks() -> str:
    """Where each of the server's threads is: what a delivery that never came was waiting on."""
    import sys
    import traceback

    names = {t.ident: t.name for t in threading.enumerate()}
    return "\n".join(
        f"--- {names.get(ident, ident)}\n" + "".join(traceback.format_stack(frame))
        for ident, frame in sys._current_frames().items()
        if str(names.get(ident, "")).startswith("chronoml")
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def signed_by(secret: str, headers: dict[str, str], body: bytes) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return headers.get("x-chronoml-signature") == expected


def webhook_rule(url: str, **kw: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "endpoint": "cancer",
        "metric": "dataset_drift",
        "op": "==",
        "threshold": 1,
        "window": "1h",
        "cooldown": "30m",
        "actions": [
            {"type": "webhook", "url": url, "secret": SECRET},
            {"type": "log"},
            {"type": "ledger"},
            {"type": "retrain", "job": "cancer-weekly"},
        ],
    }
    spec.update(kw)
    return spec


def test_fire_and_resolve_end_to_end(
    store: Store, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    engine = AlertEngine(store)
    engine.put(webhook_rule(receiver.url), "drift")
    engine.put({**webhook_rule(receiver.url), "endpoint": "other"}, "elsewhere")
    caplog.set_level(logging.INFO, logger="chronoml.alerts")

    fired = engine.evaluate("cancer", "v1", {"dataset_drift": 1.0}, T0 - H, T0)
    assert [(o.rule, o.event, o.firing) for o in fired] == [("drift", "fired", True)]
    assert fired[0].ledger_seq == 1 and len(fired[0].deliveries) == 1
    assert {"type": "retrain", "job": "cancer-weekly", "result": "no retraining configured"} in [
        dict(x) for x in fired[0].results
    ]
    again = engine.evaluate("cancer", "v1", {"dataset_drift": 1.0}, T0, T0 + H)
    assert again[0].event is None and again[0].firing and again[0].deliveries == ()
    resolved = engine.evaluate("cancer", "v1", {"dataset_drift": 0.0}, T0 + H, T0 + 2 * H)
    assert resolved[0].event == "resolved" and not resolved[0].firing
    # nothing retrains on resolving
    assert all(x["type"] != "retrain" for x in resolved[0].results)
    # a window of another length, or another endpoint, is not this rule's business
    assert engine.evaluate("cancer", "v1", {"dataset_drift": 1.0}, T0, T0 + H // 2) == []

    box = ob.Outbox(store, allow_hosts=LOOPBACK)
    attempts = box.deliver_due()
    assert box.deliver_due() == []  # all delivered: nothing is sent twice
    box.stop()
    assert [a.delivered for a in attempts] == [True, True]
    assert [b["state"] for b in receiver.bodies()] == ["fired", "resolved"]
    for headers, body in receiver.requests:
        assert signed_by(SECRET, headers, body)
        assert headers["content-type"] == "application/json"
    assert [h["x-chronoml-delivery"] for h, _ in receiver.requests] == [
        str(fired[0].deliveries[0]),
        str(resolved[0].deliveries[0]),
    ]
    first = receiver.bodies()[0]
    assert first["rule"] == "drift" and first["endpoint"] == "cancer" and first["variant"] == "v1"
    assert first["metric"] == "dataset_drift" and first["value"] == 1.0
    assert first["op"] == "==" and first["threshold"] == 1.0
    assert first["window"]["to"] == "2030-03-17T17:46:40.000000Z"
    assert first["ledger_seq"] == 1 and first["time"].endswith("Z")
    assert first["retrain"] == [{"job": "cancer-weekly", "result": "no retraining configured"}]

    events = SL.history(store, "cancer")
    assert [e.kind for e in events] == ["alert_fired", "alert_resolved"]
    assert events[0].actor == "monitor" and events[0].payload["value"] == 1.0
    assert events[0].payload["rule"] == "drift" and events[1].payload["state"] == "resolved"
    assert "no retraining configured" in event_summary(events[0])
    assert event_summary(events[1]).startswith("alert drift resolved on v1")
    assert SECRET not in json.dumps([dict(e.payload) for e in events])
    assert SL.verify(store).ok

    logged = [r.getMessage() for r in caplog.records if r.name == "chronoml.alerts"]
    assert any("alert drift fired on cancer/v1" in m for m in logged)
    assert any("alert drift resolved on cancer/v1" in m for m in logged)

    status = {r["name"]: r for r in engine.status()}
    assert status["drift"]["firing"] is False
    assert status["drift"]["states"][0]["variant"] == "v1"
    assert status["elsewhere"]["states"] == []
    counts = ob.status(store)
    assert counts["pending"] == 0 and counts["delivered"] == 2


def test_cooldown_and_missing_values_through_the_engine(store: Store) -> None:
    engine = AlertEngine(store)
    engine.put({**webhook_rule("http://127.0.0.1:9/x"), "actions": [{"type": "ledger"}]}, "d")
    assert engine.evaluate("cancer", "v1", {}, T0 - H, T0)[0].event is None
    assert engine.evaluate("cancer", "v1", {"dataset_drift": None}, T0 - H, T0)[0].value is None
    assert engine.evaluate("cancer", "v1", {"dataset_drift": 1}, T0 - H, T0)[0].event == "fired"
    assert engine.evaluate("cancer", "v1", {"dataset_drift": 0}, T0, T0 + H)[0].event == (
        "resolved"
    )
    soon = engine.evaluate("cancer", "v1", {"dataset_drift": 1}, T0 + 10, T0 + H + 10)[0]
    assert soon.event is None and soon.suppressed and not soon.firing
    later = T0 + H + 31 * 60_000_000
    assert engine.evaluate("cancer", "v1", {"dataset_drift": 1}, later - H, later)[0].event == (
        "fired"
    )
    # variants are separate subjects
    assert engine.evaluate("cancer", "v2", {"dataset_drift": 1}, T0 - H, T0)[0].event == "fired"
    assert [e.kind for e in SL.history(store, "cancer")] == [
        "alert_fired",
        "alert_resolved",
        "alert_fired",
        "alert_fired",
    ]
    assert SL.verify(store).ok


def test_replicas_evaluating_the_same_window_fire_once(store: Store) -> None:
    AlertEngine(store).put({**webhook_rule("http://127.0.0.1:9/x")}, "drift")
    results: list[Any] = []

    def replica() -> None:
        engine = AlertEngine(store)  # each replica has its own engine over the shared store
        results.extend(engine.evaluate("cancer", "v1", {"dataset_drift": 1}, T0 - H, T0))

    threads = [threading.Thread(target=replica) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(str(o.event) for o in results) == ["None", "None", "None", "fired"]
    assert [e.kind for e in SL.history(store, "cancer")] == ["alert_fired"]
    assert ob.status(store)["pending"] == 1
    assert SL.verify(store).ok


def test_a_failed_delivery_is_retried_with_backoff(store: Store, receiver: Receiver) -> None:
    engine = AlertEngine(store)
    engine.put(webhook_rule(receiver.url), "drift")
    out = engine.evaluate("cancer", "v1", {"dataset_drift": 1}, T0 - H, T0)
    receiver.codes = [500]
    box = ob.Outbox(store, allow_hosts=LOOPBACK)
    t = SL.event(store, 1).recorded_at  # type: ignore[union-attr]
    first = box.deliver_due(t)
    assert [(a.delivered, a.error) for a in first] == [(False, "HTTP 500: ok")]
    st = ob.status(store)
    assert st["pending"] == 1 and st["errors"][0]["attempts"] == 1
    assert st["errors"][0]["last_error"] == "HTTP 500: ok"
    assert box.deliver_due(t + 500_000) == []  # backing off: 1 s after the first failure
    second = box.deliver_due(t + 1_000_000)
    assert [a.delivered for a in second] == [True]
    box.stop()
    ids = {h["x-chronoml-delivery"] for h, _ in receiver.requests}
    assert len(receiver.requests) == 2 and ids == {str(out[0].deliveries[0])}
    assert receiver.requests[0][1] == receiver.requests[1][1]  # the same body, signed alike
    assert all(signed_by(SECRET, h, b) for h, b in receiver.requests)
    st = ob.status(store)
    assert st["pending"] == 0 and st["delivered"] == 1 and st["errors"] == []


def test_a_pass_that_breaks_gives_its_claimed_rows_back(store: Store, receiver: Receiver) -> None:
    engine = AlertEngine(store)
    engine.put(webhook_rule(receiver.url), "drift")
    engine.evaluate("cancer", "v1", {"dataset_drift": 1}, T0 - H, T0)
    engine.evaluate("cancer", "v2", {"dataset_drift": 1}, T0 - H, T0)
    t = max(e.recorded_at for e in SL.history(store, "cancer"))

    def broken(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("a bug below the deliverer")  # not an httpx.HTTPError

    box = ob.Outbox(
        store, client=httpx.Client(transport=httpx.MockTransport(broken)), allow_hosts=LOOPBACK
    )
    with pytest.raises(RuntimeError, match="a bug below"):
        box.deliver_due(t)
    box.stop()
    # due again at once, not held for the claim's 40 s
    again = ob.Outbox(store, allow_hosts=LOOPBACK)
    assert [a.delivered for a in again.deliver_due(t)] == [True, True]
    again.stop()
    assert len(receiver.requests) == 2 and ob.status(store)["delivered"] == 2


def test_the_outbox_survives_a_restart(store_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    first = Store.open(store_url, home)
    first.upgrade()
    out = AlertEngine(first).evaluate  # no rules yet: nothing happens
    assert out("cancer", "v1", {"dataset_drift": 1}, T0 - H, T0) == []
    AlertEngine(first).put(webhook_rule(url), "drift")
    fired = AlertEngine(first).evaluate("cancer", "v1", {"dataset_drift": 1}, T0 - H, T0)
    box = ob.Outbox(first, allow_hosts=LOOPBACK, backoff_s=0.05)
    down = box.deliver_due()  # the receiver is not listening yet
    assert len(down) == 1 and not down[0].delivered and "Connect" in (down[0].error or "")
    box.stop()
    first.close()

    receiver = Receiver(port)
    second = Store.open(store_url, home)
    try:
        box = ob.Outbox(second, allow_hosts=LOOPBACK, poll_interval_s=0.05, backoff_s=0.05)
        box.start()
        deadline = time.monotonic() + 60
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        box.stop()
        assert box.deliver_due() == []  # nothing left to send
        assert len(receiver.requests) == 1
        headers, body = receiver.requests[0]
        assert headers["x-chronoml-delivery"] == str(fired[0].deliveries[0])
        assert signed_by(SECRET, headers, body)
        assert json.loads(body)["state"] == "fired"
        st = ob.status(second)
        assert st["pending"] == 0 and st["delivered"] == 1
        assert SL.verify(second).ok
    finally:
        receiver.stop()
        second.close()


def test_rule_files_toml_and_json(store: Store, tmp_path: Path) -> None:
    toml = tmp_path / "alerts.toml"
    toml.write_text(
        """
[[rules]]
name = "cancer-drift"
endpoint = "cancer"
metric = "dataset_drift"
op = "=="
threshold = 1
window = "1h"
cooldown = "30m"
actions = [
  { type = "webhook", url = "https://hooks.example.com/ml", secret = "s3cret" },
  { type = "ledger" },
]

[[rules]]
name = "slow"
endpoint = "*"
metric = "latency_p99_ms"
op = ">"
threshold = 250
actions = [{ type = "log" }]
"""
    )
    engine = AlertEngine(store)
    assert [r.name for r in engine.load_file(toml)] == ["cancer-drift", "slow"]
    js = tmp_path / "alerts.json"
    js.write_text(json.dumps([{**engine.rules()[1].to_dict(), "threshold": 500}]))
    engine.load_file(js)  # upsert by name
    assert [r.threshold for r in engine.rules()] == [1.0, 500.0]
    assert engine.windows() == [H] and engine.windows("other") == []
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{**engine.rules()[1].to_dict(), "name": "x"}, {"name": "y"}]))
    with pytest.raises(A.RuleError) as err:
        engine.load_file(bad)
    assert err.value.field == "rules[1].metric" and "rules[1] (y)" in err.value.message
    assert engine.get("x") is None  # all or nothing
    broken = tmp_path / "broken.toml"
    broken.write_text("[[rules]\n")
    with pytest.raises(A.RuleError, match="not valid TOML"):
        read_rule_file(broken)


# --- REST ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One MLflow registry for the module's apps (the alert routes never use it)."""
    from chronoml.registry import Registry
    from chronoml.settings import Settings

    root = tmp_path_factory.mktemp("mlflow")
    return Registry(Settings(home=root, mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}"))


@pytest.fixture
def api(store_url: str, tmp_path: Path, store: Store, registry: Any) -> Iterator[TestClient]:
    from chronoml.auth.access import create_token
    from chronoml.gateway.app import create_app
    from chronoml.service import Chronoml
    from chronoml.settings import Settings

    s = Settings.from_env(
        {},
        home=tmp_path / "home",
        store_url=None if store_url.startswith("sqlite") else store_url,
        allow_webhook_hosts=LOOPBACK,
    )
    # reads as a viewer; changes send AUTH, an operator's token
    secret, _ = create_token(store, f"ops-{uuid.uuid4().hex[:6]}", "operator", by="tests")
    AUTH["Authorization"] = f"Bearer {secret}"
    # no lifespan: the alert routes need only the store
    yield admin_client(create_app(s, Chronoml(s, store, registry)), role="viewer")


AUTH: dict[str, str] = {}


def test_rest_rules_crud_with_state_and_outbox(api: TestClient, store: Store) -> None:
    spec = webhook_rule("https://hooks.example.com/ml")
    assert api.put("/v1/alerts/drift", json=spec).status_code == 403
    r = api.put("/v1/alerts/drift", json=spec, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()["rule"]
    assert body["name"] == "drift" and body["window"] == "1h" and body["firing"] is False
    assert body["actions"][0] == {
        "type": "webhook",
        "url": "https://hooks.example.com/ml",
        "signed": True,
    }
    AlertEngine(store).evaluate("cancer", "v1", {"dataset_drift": 1}, T0 - H, T0)
    listed = api.get("/v1/alerts")
    assert SECRET not in listed.text
    (only,) = listed.json()["rules"]
    assert only["firing"] is True
    assert only["states"][0] == {
        "endpoint": "cancer",
        "variant": "v1",
        "firing": True,
        "since": "2030-03-17T17:46:40.000000Z",
        "last_fired_at": "2030-03-17T17:46:40.000000Z",
        "last_value": 1.0,
        "in_cooldown": False,
    }
    box = api.get("/v1/alerts/outbox").json()
    assert box["pending"] == 1 and box["delivered"] == 0 and box["errors"] == []
    # an update keeps the state
    r = api.put("/v1/alerts/drift", json={**spec, "threshold": 0.5, "op": ">="}, headers=AUTH)
    assert r.json()["rule"]["threshold"] == 0.5 and r.json()["rule"]["firing"] is True
    assert api.delete("/v1/alerts/drift").status_code == 403
    assert api.delete("/v1/alerts/drift", headers=AUTH).json() == {"deleted": "drift"}
    assert api.delete("/v1/alerts/drift", headers=AUTH).status_code == 404
    assert api.get("/v1/alerts").json() == {"rules": []}


def test_the_running_server_delivers_what_its_monitor_fires(
    api: TestClient, receiver: Receiver
) -> None:
    r = api.put("/v1/alerts/drift", json=webhook_rule(receiver.url), headers=AUTH)
    assert r.status_code == 200, r.text
    with api:  # lifespan: the gateway starts its outbox deliverer and alert engine
        gw = api.app.state.gateway  # type: ignore[attr-defined]
        out = gw.alerts.evaluate("cancer", "v1", {"dataset_drift": 1}, T0 - H, T0)
        assert out[0].event == "fired"
        deadline = time.monotonic() + 60
        box = api.get("/v1/alerts/outbox").json()
        while box["delivered"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
            box = api.get("/v1/alerts/outbox").json()
        assert box["pending"] == 0 and box["delivered"] == 1, (box, thread_stacks())
        assert len(receiver.requests) == 1 and signed_by(SECRET, *receiver.requests[0])
    assert not gw.outbox.running  # stopped with the server


BAD_RULES: list[tuple[dict[str, Any], str]] = [
    ({"metric": "latency"}, "metric"),
    ({"threshold": "high"}, "threshold"),
    ({"op": "=>"}, "op"),
    ({"window": "an hour"}, "window"),
    ({"actions": [{"type": "webhook", "url": "not a url"}]}, "actions[0].url"),
    ({"name": "other"}, "name"),
    ({"colour": "red"}, "colour"),
]


def test_rest_bad_rules_are_422_naming_the_field(api: TestClient) -> None:
    for change, field in BAD_RULES:
        spec = {**webhook_rule("http://x.example"), **change}
        r = api.put("/v1/alerts/drift", json=spec, headers=AUTH)
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["code"] == "bad_rule" and err["field"] == field and err["message"]
    assert api.get("/v1/alerts").json() == {"rules": []}


def test_rest_bad_json(api: TestClient) -> None:
    r = api.put(
        "/v1/alerts/drift", content=b"{nope", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_json"
    r = api.put("/v1/alerts/drift", json=[1], headers=AUTH)
    assert r.status_code == 400


# --- CLI -----------------------------------------------------------------------------


def chronoml(store_url: str, tmp_path: Path, *args: str) -> Any:
    opts = ["--home", str(tmp_path / "home")]
    if not store_url.startswith("sqlite"):
        opts += ["--store", store_url]
    return CliRunner().invoke(cli, [*opts, *args], catch_exceptions=False)


def test_cli_add_list_load_remove(store: Store, store_url: str, tmp_path: Path) -> None:
    r = chronoml(
        store_url,
        tmp_path,
        "alerts",
        "add",
        "drift",
        "--endpoint",
        "cancer",
        "--metric",
        "drift:mean radius",
        "--op",
        ">",
        "--threshold",
        "0.1",
        "--window",
        "1h",
        "--cooldown",
        "15m",
        "--webhook",
        "https://hooks.example.com/ml",
        "--secret",
        SECRET,
        "--ledger",
        "--retrain",
        "cancer-weekly",
    )
    assert r.exit_code == 0, r.output
    assert "alert drift: drift:mean radius > 0.1 over 1h on cancer" in r.output
    rule_ = AlertEngine(store).get("drift")
    assert rule_ is not None and rule_.actions[0].secret == SECRET and rule_.cooldown == 15 * 60e6

    AlertEngine(store).evaluate("cancer", "v1", {"drift:mean radius": 0.3}, T0 - H, T0)
    r = chronoml(store_url, tmp_path, "alerts", "list")
    assert r.exit_code == 0 and "drift" in r.output and "FIRING" in r.output
    assert "cancer/v1" in r.output and SECRET not in r.output
    listed = json.loads(chronoml(store_url, tmp_path, "alerts", "list", "--json").output)
    assert listed[0]["states"][0]["firing"] is True

    r = chronoml(store_url, tmp_path, "alerts", "outbox")
    assert r.exit_code == 0 and r.output.startswith("1 pending")

    f = tmp_path / "rules.json"
    f.write_text(json.dumps({"rules": [{**rule_.to_dict(), "name": "second"}]}))
    r = chronoml(store_url, tmp_path, "alerts", "load", str(f))
    assert r.exit_code == 0 and "loaded 1 alert rule(s)" in r.output and "second" in r.output

    assert chronoml(store_url, tmp_path, "alerts", "remove", "drift").exit_code == 0
    r = chronoml(store_url, tmp_path, "alerts", "remove", "drift")
    assert r.exit_code == 1 and "no alert rule named 'drift'" in r.output
    assert [x.name for x in AlertEngine(store).rules()] == ["second"]


RULE = ["--metric", "error_rate", "--op", ">", "--threshold", "1"]
BAD_CLI = [
    (["--metric", "nope", "--op", ">", "--threshold", "1", "--log"], "--metric: unknown"),
    ([*RULE, "--op", "!", "--log"], "--op:"),
    ([*RULE, "--threshold", "x", "--log"], "--threshold"),
    (RULE, "--webhook/--log/--ledger/--retrain: actions must be a non-empty list"),
    ([*RULE, "--webhook", "x"], "--webhook: url must be"),
    ([*RULE, "--window", "1y", "--log"], "--window:"),
    ([*RULE, "--secret", "s", "--log"], "--secret signs webhooks"),
]


def test_cli_bad_rules_exit_1(store: Store, store_url: str, tmp_path: Path) -> None:
    for args, words in BAD_CLI:
        r = chronoml(store_url, tmp_path, "alerts", "add", "bad", *args)
        assert r.exit_code == 1, r.output
        assert words in r.output and r.output.startswith("error: ")
    assert AlertEngine(store).rules() == []


def test_cli_bad_rule_file_exits_1_for_load_and_server(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    f = tmp_path / "rules.toml"
    f.write_text('[[rules]]\nname = "a"\nmetric = "error_rate"\nop = "~"\nthreshold = 1\n')
    for cmd in (["alerts", "load", str(f)], ["server", "--alerts", str(f), "--port", "1"]):
        r = chronoml(store_url, tmp_path, *cmd)
        assert r.exit_code == 1, r.output
        assert "rules[0] (a): op must be one of" in r.output
