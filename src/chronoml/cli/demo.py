"""``chronoml demo``: the main job end to end on scikit-learn's breast-cancer data."""

from __future__ import annotations

import logging
import random
import signal
import time
from typing import Any

import click

from chronoml.cli.ports import port_holder
from chronoml.settings import Settings

ENDPOINT = "cancer"
MODEL = "cancer-classifier"


class _Once(logging.Filter):
    """Let a warning containing ``text`` through once: the demo logs two models alike."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if self.text not in record.getMessage():
            return True
        if self.seen:
            return False
        self.seen = True
        return True


def _sample(n_rows: int, seed: int = 0) -> list[int]:
    """Row order for the demo's traffic: shuffled, so each request is like the training data.

    The data set is grouped by diagnosis; its first rows alone differ from the
    whole, and drift over them would be real but say nothing about the models.
    """
    return [int(i) for i in random.Random(seed).sample(range(n_rows), n_rows)]


def _on_sigterm(signum: int, frame: Any) -> None:
    # `kill` or an IDE's stop button: the same clean end as Ctrl-C, exit status 0
    raise KeyboardInterrupt


def _train_and_register(df: Any, snap: Any, estimator: Any, run_name: str) -> str:
    # lazy: mlflow costs 1.6 s to import
    import mlflow
    import sklearn
    from mlflow.models import infer_signature

    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    import chronoml

    X = df.drop(columns=["target"])
    y = df["target"]
    estimator.fit(X, y)
    with mlflow.start_run(run_name=run_name):
        chronoml.log_snapshot(snap)
        mlflow.log_param("estimator", type(estimator).__name__)
        mlflow.log_metric("train_accuracy", float(estimator.score(X, y)))
        info = mlflow.sklearn.log_model(
            estimator,
            name="model",
            registered_model_name=MODEL,
            signature=infer_signature(X.head(5), estimator.predict(X.head(5))),
            input_example=X.head(3),
            # explicit requirements: inferring them costs seconds per model
            pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
            serialization_format="cloudpickle",
        )
    return str(info.registered_model_version)


def run(
    settings: Settings, *, host: str = "127.0.0.1", port: int = 8000, serve: bool = True
) -> None:
    """Run the walkthrough; with ``serve`` keep the server up until Ctrl-C."""
    # lazy: the HTTP client loads only for the demo's requests
    import httpx
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # lazy: the command's modules load when it runs, so `chronoml --help` stays fast
    import chronoml
    from chronoml.auth.access import create_token, ensure_admin_token
    from chronoml.cli.endpoints import format_decision, format_history, format_status
    from chronoml.gateway.server import BackgroundServer
    from chronoml.service import Chronoml
    from chronoml.timeutil import iso, now_us

    busy = port_holder(host, port)
    if busy is not None:
        raise RuntimeError(f"{busy}: stop it or pass --port")

    say = click.echo
    logging.getLogger("mlflow.sklearn").addFilter(_Once("pickle or cloudpickle format"))
    cm = Chronoml.open(settings)
    chronoml.setup_mlflow("chronoml-demo", settings)
    say(f"chronoml home: {settings.home}")

    server = BackgroundServer(cm, host, port)
    server.start()
    base = f"http://{host}:{port}"
    admin_file = ensure_admin_token(cm.store, settings.home) or settings.home / "admin.token"
    # the walkthrough's own traffic: a predictor token (an operator's for its changes)
    operator, _ = create_token(cm.store, f"demo-ops-{now_us()}", "operator", by=cm.actor())
    predictor, _ = create_token(cm.store, f"demo-app-{now_us()}", "predictor", by=cm.actor())
    http = httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {predictor}"})

    data = load_breast_cancer(as_frame=True).frame
    features = data.drop(columns=["target"])
    order = _sample(len(features))

    def traffic(n: int, offset: int) -> list[dict[str, Any]]:
        answers = []
        for i in range(n):
            row = features.iloc[[order[(offset + i) % len(features)]]]
            body = {"dataframe_split": {"columns": list(row.columns), "data": row.values.tolist()}}
            r = http.post(
                f"/v1/endpoints/{ENDPOINT}/predict",
                json=body,
                headers={"X-Chronoml-Unit": f"patient-{offset + i:04d}"},
            )
            r.raise_for_status()
            answers.append(r.json())
        return answers

    def deploy(spec: dict[str, Any]) -> None:
        r = http.put(
            f"/v1/endpoints/{ENDPOINT}", json=spec, headers={"Authorization": f"Bearer {operator}"}
        )
        if r.status_code != 200:
            raise RuntimeError(f"deploy failed: {r.text}")
        ev = r.json()["event"]
        say(f"  ledger #{ev['seq']} {ev['effective_at']}: {ev['summary']}  [{ev['hash'][:12]}]")

    say("\n1. Snapshot clinic A's data and train a first model (logistic regression)")
    snap_a = chronoml.snapshot(data.iloc[:300], name="cancer-clinic-a", settings=settings)
    say(f"  snapshot {snap_a.id} ({snap_a.rows} rows)")
    v1 = _train_and_register(
        data.iloc[:300],
        snap_a,
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
        "v1-logreg",
    )
    again = " (earlier runs registered the lower versions)" if v1 != "1" else ""
    say(f"  registered {MODEL} v{v1}{again}")

    say(f"\n2. Deploy it to endpoint '{ENDPOINT}' and send 20 predictions over HTTP")
    deploy({"model_uri": f"models:/{MODEL}/{v1}"})
    traffic(20, 0)
    moment_1 = now_us()
    time.sleep(0.05)

    say("\n3. Snapshot clinics A+B and train a second model (gradient boosting)")
    snap_b = chronoml.snapshot(data, name="cancer-clinics-a-b", settings=settings)
    say(f"  snapshot {snap_b.id} ({snap_b.rows} rows)")
    v2 = _train_and_register(data, snap_b, GradientBoostingClassifier(random_state=0), "v2-gbm")
    say(f"  registered {MODEL} v{v2}")

    say(f"\n4. Deploy v{v2} beside v{v1} at 50/50 and send 40 more predictions")
    deploy({"model_uri": f"models:/{MODEL}/{v2}", "weight": 50})
    answers = traffic(40, 20)
    moment_2 = now_us()
    by_variant: dict[str, int] = {}
    for a in answers:
        by_variant[a["variant"]] = by_variant.get(a["variant"], 0) + 1
    say("  answered by: " + ", ".join(f"{k} {n}" for k, n in sorted(by_variant.items())))

    say(f"\n5. What was live at {iso(moment_1)}?")
    say(format_status(cm.status(ENDPOINT, moment_1)))
    say(f"\n   ... and at {iso(moment_2)}?")
    say(format_status(cm.status(ENDPOINT, moment_2)))

    say(f"\n6. The history of '{ENDPOINT}'")
    say(format_history(cm.history(ENDPOINT)))

    pick = next((a for a in answers if a["model"]["version"] == v2), answers[0])
    say("\n7. The full lineage of one decision")
    say(format_decision(cm.decision(pick["decision_ids"][0])))

    say("\n8. The ledger verifies")
    report = cm.verify()
    say(f"  {'ok' if report.ok else 'FAILED'}: {report.events} events, head {report.head[:16]}")
    http.close()

    if not serve:
        server.stop()
        cm.close()
        return
    # before the announcement, so a stop right after it is already a clean one
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        _announce(base, admin_file, iso(moment_1))
        server.wait()
    except KeyboardInterrupt:
        server.stop()
    finally:
        cm.close()


def _announce(base: str, admin_file: Any, moment: str) -> None:
    say = click.echo
    say(f"\nchronoml server is running on {base} (dashboard at {base}/, Ctrl-C to stop). Try:")
    say(f'  curl -H "Authorization: Bearer $(cat {admin_file})" {base}/v1/endpoints/{ENDPOINT}')
    say(f"  chronoml status {ENDPOINT} --at {moment}")
    say(f"  chronoml drift {ENDPOINT} --window 1h")
    say(
        "  (drift compares the requests, a shuffled sample of both clinics, with each\n"
        "   version's training snapshot: v1 saw clinic A only, so features that differ\n"
        "   between the clinics can show as drifted for v1; v2 saw both.)"
    )
