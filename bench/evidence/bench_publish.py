"""What publishing a checkpoint costs: the webhook's outbox row, the RFC 3161 round trip, and
the checks ``audit verify`` adds (stored signatures, timestamps).

One run on an embedded (SQLite) store in a temporary folder, with the test suite's
timestamp authority and a webhook receiver on loopback (``tests/tsa_support.py``):

- ``issue``: sign and record a checkpoint, alone (the anchor), with one webhook
  row enqueued in the same transaction, and with a timestamp asked first;
- one delivery of that webhook by the outbox (POST on loopback, row updated);
- the checks per stored checkpoint: its Ed25519 signature, and its timestamp's
  imprint alone and with the authority's chain (CMS signature, certificates).

None of it runs on the request path: the server's checkpoint worker does it
every ``--checkpoint-interval`` (an hour by default). No goal; the numbers go in
bench/evidence/README.md.

    .venv/bin/python bench/evidence/bench_publish.py               # about 20 s
    .venv/bin/python bench/evidence/bench_publish.py --repeats 50
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))  # the loopback authority and receiver

import httpx  # noqa: E402

from chronoml.domain import ledger as L  # noqa: E402
from chronoml.evidence import checkpoints as EC  # noqa: E402
from chronoml.evidence import keys  # noqa: E402
from chronoml.evidence import signatures as ES  # noqa: E402
from chronoml.evidence import timestamps as TS  # noqa: E402
from chronoml.monitor.outbox import Outbox  # noqa: E402
from chronoml.store import Store  # noqa: E402
from chronoml.store import ledger as SL  # noqa: E402
from tsa_support import Authority, Receiver, serve_authority, serve_receiver  # noqa: E402

LOOPBACK = ("127.0.0.1",)


def median_ms(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1 if len(times) > 1 else 0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    n = args.repeats
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        store = Store.open(f"sqlite:///{home / 'chronoml.db'}", home)
        store.upgrade()
        SL.append(store, L.Change("alert", "churn", "monitor", {"rule": "drift"}))
        key = keys.generate("bench.log")
        tsa = Authority()
        got = Receiver()
        rows: list[tuple[str, float, float]] = []
        with serve_authority(tsa) as tsa_url, serve_receiver(got) as port:
            hook = [f"http://127.0.0.1:{port}/cp"]
            authority = TS.Authority(tsa_url, LOOPBACK)
            outbox = Outbox(store, allow_hosts=LOOPBACK)
            cases: list[tuple[str, Callable[[], object]]] = [
                ("issue: sign + record (anchor)", lambda: EC.issue(store, key)),
                ("issue + 1 webhook row", lambda: EC.issue(store, key, webhooks=hook)),
                ("issue + RFC 3161 timestamp", lambda: EC.issue(store, key, authority=authority)),
            ]
            for name, fn in cases:
                rows.append((name, *median_ms(fn, n)))
            with httpx.Client() as client:  # the request alone, without making a client
                rows.append(
                    (
                        "  of which the round trip (client reused)",
                        *median_ms(lambda: authority.stamp(b"x", client=client), n),
                    )
                )
            rows.append(("deliver 1 webhook", *median_ms(outbox.deliver_due, 1)))
            pending = [EC.issue(store, key, webhooks=hook) for _ in range(n)]
            t = time.perf_counter()
            outbox.deliver_due()
            per = (time.perf_counter() - t) * 1000 / len(pending)
            rows.append((f"deliver {len(pending)} webhooks, per webhook", per, per))
            stamped = EC.issue(store, key, authority=authority)
            assert stamped.timestamp is not None
            der, data, vk = stamped.timestamp, stamped.note.encode(), key.verifier()
            rows.append(
                (
                    "check 1 stored signature",
                    *median_ms(lambda: ES.signature_problem(stamped.note, [vk]), n),
                )
            )
            rows.append(
                ("check 1 timestamp, imprint only", *median_ms(lambda: TS.verify(der, data), n))
            )
            rows.append(
                (
                    "check 1 timestamp with the chain",
                    *median_ms(lambda: TS.verify(der, data, [tsa.ca]), n),
                )
            )
        store.close()
    anchor = rows[0][1]
    print(f"publishing a checkpoint, SQLite, {n} repeats (2 shared cores: noisy)")
    print(f"{'measured':<44} {'median ms':>10} {'p99 ms':>8} {'x anchor':>9}")
    for name, med, p99 in rows:
        print(f"{name:<44} {med:>10.3f} {p99:>8.3f} {med / anchor:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
