"""Publishing checkpoints outside the store: webhooks through the durable outbox (egress
checked, retried, surviving a restart) and RFC 3161 timestamps from a real authority on
loopback, kept beside the checkpoint and checked by ``audit verify``."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from chronoml.auth import AuthError
from chronoml.auth.policy import check_webhook_url
from chronoml.cli import cli
from chronoml.domain import ledger as L
from chronoml.domain import note
from chronoml.evidence import checkpoints as EC
from chronoml.evidence import keys
from chronoml.evidence import timestamps as TS
from chronoml.monitor.outbox import DELIVERY_HEADER, Outbox, status
from chronoml.store import Store
from chronoml.store import checkpoints as SC
from chronoml.store import ledger as SL
from chronoml.timeutil import now_us
from chronoml.verify import ed25519_verify
from tsa_support import Authority as LocalAuthority
from tsa_support import Receiver, serve_authority, serve_receiver

T0 = 1_767_225_600_000_000
LOOPBACK = ("127.0.0.1",)


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Iterator[Store]:
    s = Store.open(store_url, tmp_path / "home")
    s.upgrade()
    SL.append(s, L.Change("alert", "churn", "monitor", {"rule": "drift"}), now=T0)
    yield s
    s.close()


@pytest.fixture
def key(tmp_path: Path) -> keys.SigningKey:
    return keys.create_key_file(tmp_path / "signing.key", "chronoml.test")


@pytest.fixture
def tsa() -> LocalAuthority:
    return LocalAuthority()


@pytest.fixture
def tsa_url(tsa: LocalAuthority) -> Iterator[str]:
    with serve_authority(tsa) as url:
        yield url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def opened(body: bytes, key: keys.SigningKey) -> tuple[dict[str, object], note.Checkpoint]:
    payload = json.loads(body)
    return payload, note.open_checkpoint(str(payload["note"]), key.verifier(), ed25519_verify)


def audit(store_url: str, tmp_path: Path, *args: str) -> Result:
    base = ["--home", str(tmp_path / "home"), "--signing-key", str(tmp_path / "signing.key")]
    if not store_url.startswith("sqlite"):
        base += ["--store", store_url]
    return CliRunner().invoke(cli, [*base, "audit", *args], catch_exceptions=False)


# --- webhooks ---------------------------------------------------------------------


def test_a_checkpoint_reaches_its_webhook_with_the_secret_resolved_at_delivery(
    store: Store, key: keys.SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CP_HOOK_TOKEN", "s3cret")
    got = Receiver()
    with serve_receiver(got) as port:
        url = f"http://127.0.0.1:{port}/cp?token=${{CP_HOOK_TOKEN}}"
        check_webhook_url(url, LOOPBACK, field="checkpoint_webhook")
        issued = EC.issue(store, key, webhooks=[url])
        assert len(issued.deliveries) == 1
        with store.read() as conn:  # stored as configured: the secret never is
            target = conn.exec_driver_sql("SELECT target FROM outbox").scalar()
        assert "${CP_HOOK_TOKEN}" in str(target) and "s3cret" not in str(target)
        attempts = Outbox(store, allow_hosts=LOOPBACK).deliver_due()
    assert [a.delivered for a in attempts] == [True]
    headers, path, body = got.requests[0]
    assert path == "/cp?token=s3cret"
    assert headers[DELIVERY_HEADER.lower()] == str(issued.deliveries[0])
    payload, cp = opened(body, key)
    assert cp == issued.checkpoint and cp.size == 1
    assert payload["id"] == 1 and payload["timestamp"] is None


def test_a_receiver_that_is_down_gets_the_checkpoint_after_a_restart(
    store_url: str, store: Store, key: keys.SigningKey, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there yet
    url = f"http://127.0.0.1:{port}/cp"
    issued = EC.issue(store, key, webhooks=[url])
    first = Outbox(store, allow_hosts=LOOPBACK, backoff_s=1.0)
    t = now_us()
    [failed] = first.deliver_due(now=t)
    assert not failed.delivered and failed.error is not None
    assert first.deliver_due(now=t + 500_000) == []  # backing off
    first.stop()
    store.close()

    # a new process on the same store, with the receiver back
    again = Store.open(store_url, tmp_path / "home")
    try:
        assert status(again)["pending"] == 1
        got = Receiver()
        with serve_receiver(got, port):
            [sent] = Outbox(again, allow_hosts=LOOPBACK).deliver_due(now=t + 2_000_000)
        assert sent.delivered and sent.id == issued.deliveries[0]
        assert status(again)["pending"] == 0
        headers, _, body = got.requests[0]
        assert headers[DELIVERY_HEADER.lower()] == str(sent.id)
        assert opened(body, key)[1] == issued.checkpoint
    finally:
        again.close()


def test_the_worker_publishes_each_new_checkpoint_through_the_outbox(
    store: Store, key: keys.SigningKey, tmp_path: Path
) -> None:
    got = Receiver()
    with serve_receiver(got) as port:
        deliverer = Outbox(store, allow_hosts=LOOPBACK, poll_interval_s=3600)
        deliverer.start()
        worker = EC.CheckpointWorker(
            store,
            key,
            3600,
            tmp_path / "published",
            webhooks=[f"http://127.0.0.1:{port}/cp"],
            on_enqueue=deliverer.wake,
        )
        worker.start()
        worker.wake()
        deadline = time.monotonic() + 30
        while not got.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        worker.stop()
        deliverer.stop()
    assert len(got.requests) == 1  # woken by the worker, not by the hour-long poll
    cp = opened(got.requests[0][2], key)[1]
    assert (tmp_path / "published" / "latest.txt").read_text() == worker.last.note  # type: ignore[union-attr]
    assert cp.size == 1


def test_private_and_credential_bearing_destinations_are_refused(
    store: Store, key: keys.SigningKey, tmp_path: Path
) -> None:
    with pytest.raises(AuthError) as refused:
        check_webhook_url("http://127.0.0.1:9/cp", (), field="checkpoint_webhook")
    assert refused.value.field == "checkpoint_webhook"
    assert "--allow-webhook-host 127.0.0.1:9" in refused.value.message
    with pytest.raises(AuthError, match="plain text"):
        check_webhook_url("https://hooks.example.com/cp?token=abc", (), field="checkpoint_webhook")
    r = CliRunner().invoke(
        cli,
        ["--home", str(tmp_path / "h"), "server", "--checkpoint-webhook", "http://10.0.0.7/cp"],
    )
    assert r.exit_code != 0 and "--checkpoint-webhook: webhook host '10.0.0.7'" in r.output
    r = CliRunner().invoke(
        cli, ["--home", str(tmp_path / "h"), "server", "--tsa-url", "http://localhost:318/"]
    )
    assert r.exit_code != 0 and "--tsa-url:" in r.output and "loopback" in r.output
    # checked again at each delivery: a row aimed at loopback without the allowance stays
    got = Receiver()
    with serve_receiver(got) as port:
        EC.issue(store, key, webhooks=[f"http://127.0.0.1:{port}/cp"])
        [attempt] = Outbox(store).deliver_due()
    assert not attempt.delivered and "refused" in str(attempt.error)
    assert got.requests == []


# --- RFC 3161 timestamps ------------------------------------------------------------


def test_a_timestamped_checkpoint_is_kept_beside_it_and_verifies(
    store_url: str,
    store: Store,
    key: keys.SigningKey,
    tsa: LocalAuthority,
    tsa_url: str,
    tmp_path: Path,
) -> None:
    got = Receiver()
    with serve_receiver(got) as port:
        issued = EC.issue(
            store,
            key,
            authority=TS.Authority(tsa_url, LOOPBACK),
            webhooks=[f"http://127.0.0.1:{port}/cp"],
        )
        Outbox(store, allow_hosts=LOOPBACK).deliver_due()
    assert issued.timestamp is not None and len(tsa.requests) == 1
    folder = tmp_path / "published"
    path = EC.publish(issued, folder)
    assert TS.beside(path).read_bytes() == issued.timestamp
    assert (folder / "latest.tsr").read_bytes() == issued.timestamp
    with store.read() as conn:
        assert SC.timestamps_in(conn)[1][1] == issued.timestamp
    payload, _ = opened(got.requests[0][2], key)
    assert base64.b64decode(str(payload["timestamp"])) == issued.timestamp
    stamp = TS.verify(issued.timestamp, issued.note.encode(), [tsa.ca])
    assert stamp.authority == "CN=chronoml test TSA" and stamp.chained

    root = tmp_path / "tsa-root.pem"
    root.write_bytes(tsa.root_pem())
    vkey = key.vkey()
    args = ["verify", "--checkpoint", str(folder / "latest.txt"), "--key", vkey]
    r = audit(store_url, tmp_path, *args, "--tsa-cert", str(root))
    assert r.exit_code == 0, r.output
    assert "2 timestamps ok (signed by the authority)" in r.output
    r = audit(store_url, tmp_path, *args)
    assert r.exit_code == 0 and "2 timestamps ok (imprints only: give --tsa-cert)" in r.output
    chain = tmp_path / "tsa-chain.pem"
    chain.write_bytes(tsa.chain_pem())
    r = audit(store_url, tmp_path, *args, "--tsa-cert", str(chain), "--json")
    body = json.loads(r.output)
    assert body["ok"] and body["timestamps"]["checked"] == 2 and body["timestamps"]["chained"]


def test_a_timestamp_of_other_data_or_by_another_authority_fails_and_is_named(
    store_url: str,
    store: Store,
    key: keys.SigningKey,
    tsa: LocalAuthority,
    tsa_url: str,
    tmp_path: Path,
) -> None:
    authority = TS.Authority(tsa_url, LOOPBACK)
    folder = tmp_path / "published"
    first = EC.publish(EC.issue(store, key, authority=authority), folder)
    SL.append(store, L.Change("alert", "churn", "monitor", {"rule": "latency"}), now=T0 + 1)
    second = EC.publish(EC.issue(store, key, authority=authority), folder)
    root = tmp_path / "root.pem"
    root.write_bytes(tsa.root_pem())
    args = ["verify", "--checkpoint", str(second), "--key", key.vkey(), "--tsa-cert", str(root)]
    assert audit(store_url, tmp_path, *args).exit_code == 0

    # the first checkpoint's timestamp moved beside the second
    TS.beside(second).write_bytes(TS.beside(first).read_bytes())
    r = audit(store_url, tmp_path, *args)
    assert r.exit_code == 1
    assert f"FAILED at timestamp {TS.beside(second)}: its message imprint is not" in r.output

    # a genuine timestamp, checked against another authority's root
    TS.beside(second).write_bytes(TS.beside(folder / "latest.txt").read_bytes())
    other = tmp_path / "other.pem"
    other.write_bytes(LocalAuthority("another TSA").root_pem())
    r = audit(store_url, tmp_path, *args[:-1], str(other))
    assert r.exit_code == 1
    assert "does not verify with the authority's certificate" in r.output

    # asked to check timestamps, a checkpoint file without one fails
    TS.beside(second).unlink()
    r = audit(store_url, tmp_path, *args)
    assert r.exit_code == 1 and "it has no timestamp, and --tsa-cert asks for one" in r.output


def test_an_edited_stored_timestamp_is_named(
    store_url: str,
    store: Store,
    key: keys.SigningKey,
    tsa: LocalAuthority,
    tsa_url: str,
    tmp_path: Path,
) -> None:
    authority = TS.Authority(tsa_url, LOOPBACK)
    EC.issue(store, key, authority=authority)
    SL.append(store, L.Change("alert", "churn", "monitor", {"rule": "latency"}), now=T0 + 1)
    other = EC.issue(store, key, authority=authority)
    assert other.timestamp is not None
    # an insider swaps in the other checkpoint's genuine timestamp for #1
    with store.write() as conn:
        conn.execute(
            SC.TS.update().where(SC.TS.c.checkpoint_id == 1).values(response=other.timestamp)
        )
    root = tmp_path / "root.pem"
    root.write_bytes(tsa.root_pem())
    r = audit(store_url, tmp_path, "verify", "--tsa-cert", str(root))
    assert r.exit_code == 1
    assert "FAILED at timestamp of stored checkpoint #1: its message imprint" in r.output
    # one byte of the token's signature changed
    bad = bytearray(other.timestamp)
    bad[-5] ^= 0x01
    with store.write() as conn:
        conn.execute(SC.TS.update().where(SC.TS.c.checkpoint_id == 2).values(response=bytes(bad)))
    report = TS.check_stored(store, [tsa.ca])
    assert [w for w, _ in report.problems] == [
        "timestamp of stored checkpoint #1",
        "timestamp of stored checkpoint #2",
    ]


def test_a_deleted_stored_timestamp_is_named(
    store_url: str, store: Store, key: keys.SigningKey, tsa_url: str, tmp_path: Path
) -> None:
    authority = TS.Authority(tsa_url, LOOPBACK)
    first = EC.issue(store, key, authority=authority)
    SL.append(store, L.Change("alert", "churn", "monitor", {"rule": "latency"}), now=T0 + 1)
    EC.issue(store, key, authority=authority)
    # the note says, under its signature, that it was sent to an authority
    assert EC.TIMESTAMPED in note.parse_checkpoint(note.parse_note(first.note).text).extensions
    assert audit(store_url, tmp_path, "verify", "--key", key.vkey()).exit_code == 0
    # an insider deletes the first checkpoint's timestamp row
    with store.write() as conn:
        conn.execute(SC.TS.delete().where(SC.TS.c.checkpoint_id == 1))
    r = audit(store_url, tmp_path, "verify", "--key", key.vkey())
    assert r.exit_code == 1, r.output
    assert "FAILED at stored checkpoint #1: its signed note says an RFC 3161 authority" in r.output
    assert "timestamp is missing from the store" in r.output


def test_without_an_answering_authority_the_checkpoint_is_issued_without_a_timestamp(
    store: Store, key: keys.SigningKey, tsa: LocalAuthority, tsa_url: str
) -> None:
    down = TS.Authority(f"http://127.0.0.1:{free_port()}/tsa", LOOPBACK, timeout_s=2)
    issued = EC.issue(store, key, authority=down)
    assert issued.timestamp is None and "ConnectError" in str(issued.timestamp_error)
    assert EC.TIMESTAMPED not in issued.checkpoint.extensions
    assert EC.TIMESTAMPED not in note.parse_checkpoint(note.parse_note(issued.note).text).extensions
    refused = EC.issue(store, key, authority=TS.Authority(tsa_url))  # loopback not allowed
    assert refused.timestamp is None and "refused" in str(refused.timestamp_error)
    assert tsa.requests == []
    tsa.tamper = True
    with pytest.raises(TS.TimestampError, match="timestamped other data"):
        TS.Authority(tsa_url, LOOPBACK).stamp(b"a checkpoint")
    with store.read() as conn:
        assert [c[0] for c in SC.checkpoints_in(conn)] == [1, 2] and SC.timestamps_in(conn) == {}


def test_the_certificate_file_must_reach_a_root(tmp_path: Path, tsa: LocalAuthority) -> None:
    leaf_only = tmp_path / "leaf.pem"
    leaf_only.write_bytes(tsa.chain_pem().split(b"-----END CERTIFICATE-----")[0] + b"-----END "
                          b"CERTIFICATE-----\n")  # fmt: skip
    with pytest.raises(TS.TimestampError, match="no root certificate"):
        TS.load_certificates(leaf_only)
    chain = tmp_path / "chain.pem"
    chain.write_bytes(tsa.chain_pem())
    assert TS.load_certificates(chain) == [tsa.cert, tsa.ca]


def test_audit_checkpoint_on_demand_writes_its_timestamp_beside_it(
    store_url: str,
    store: Store,
    key: keys.SigningKey,
    tsa: LocalAuthority,
    tsa_url: str,
    tmp_path: Path,
) -> None:
    out = tmp_path / "cp.txt"
    r = audit(store_url, tmp_path, "checkpoint", "--out", str(out), "--tsa-url", tsa_url)
    assert r.exit_code == 0, r.output
    TS.verify(TS.beside(out).read_bytes(), out.read_bytes(), [tsa.ca])
    down = f"http://127.0.0.1:{free_port()}/tsa"
    r = audit(store_url, tmp_path, "checkpoint", "--out", str(out), "--tsa-url", down)
    assert r.exit_code == 0 and "warning: no timestamp:" in r.output
    assert not TS.beside(out).exists()  # the old one would not match the new note


def test_one_process_per_store_signs_and_publishes(
    store_url: str, store: Store, key: keys.SigningKey, tmp_path: Path
) -> None:
    """Two servers on one store (``--workers 2``, or replicas): one checkpoint and one
    webhook per new size, not one from each; the other takes over when the first stops."""
    other = Store.open(store_url, tmp_path / "home")
    hook = ["http://127.0.0.1:9/cp"]
    first = EC.CheckpointWorker(store, key, 3600, webhooks=hook)
    second = EC.CheckpointWorker(other, key, 3600, webhooks=hook)
    try:
        first._step()
        second._step()
        with store.read() as conn:
            assert len(SC.checkpoints_in(conn)) == 1
        assert status(store)["pending"] == 1
        first.stop()
        SL.append(store, L.Change("alert", "churn", "monitor", {"rule": "latency"}), now=T0 + 1)
        second._step()
        assert second.last is not None and second.last.checkpoint.size == 2
        assert status(store)["pending"] == 2
    finally:
        second.stop()
        other.close()
