"""A tree ensemble's model call, per batch, with and without its fast call (in process).

For LightGBM's ``LGBMClassifier`` and XGBoost's ``XGBClassifier`` (each 100
trees on 30 float features, saved with their MLflow flavors) and scikit-learn's
``GradientBoostingClassifier`` (100 trees of depth 3, the serving bench's
model), it loads the saved model twice with ``registry.models.load_model``:
once with fast calls (the booster reading the float matrix, after the load
probe), once without (``fast_calls=False``: the model's own call, what a
deploy served before). Then it times what the gateway's model thread does
with a batch of ``n`` rows already parsed into a float64 matrix:

- without: for LightGBM and XGBoost, the matrix into a DataFrame, the model's
  own ``predict`` (MLflow's pyfunc, with its schema enforcement) and its
  ``predict_proba``; for scikit-learn, its float-matrix path (its own
  ``predict_proba`` with its checks, on the matrix), as the batcher calls them;
- with: ``proba_matrix`` on the matrix and the labels from those scores (one
  call: the loader showed the labels are the scores' argmax);
- and, as the floor, the booster alone on the matrix (``Booster.predict``,
  ``Booster.inplace_predict``) on as many threads as the fast call uses (one
  below 256 rows), which is what the fast call adds its few numpy steps to.

The two are interleaved call by call so both see the same noise, and each
figure is the median of ``--runs`` calls. It also reports how long the load
takes with and without the probe, and checks that both give identical
labels and scores on the rows timed.

    .venv/bin/python bench/serving/trees.py --runs 300
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from sklearn.datasets import make_classification

from chronoml.domain.ledger import ModelRef
from chronoml.registry.boosters import FEW
from chronoml.registry.models import LoadedModel, labels_of, load_model

FEATURES = [f"f{i:02d}" for i in range(30)]
REF = ModelRef(name="bench", version="1", run_id="r", artifact_digest="sha256:" + "0" * 64)


def _models(x: pd.DataFrame, y: Any) -> dict[str, tuple[Any, Any, Callable[[Any], Any]]]:
    """Each library's fitted classifier, its MLflow flavor, and its booster on a matrix."""
    import lightgbm
    import mlflow.lightgbm
    import mlflow.sklearn
    import mlflow.xgboost
    import xgboost
    from sklearn.ensemble import GradientBoostingClassifier

    lgb = lightgbm.LGBMClassifier(n_estimators=100, verbose=-1).fit(x, y)
    xgb = xgboost.XGBClassifier(n_estimators=100).fit(x, y)
    gb = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0).fit(x, y)
    booster, alone = xgb.get_booster(), xgb.get_booster().copy()
    alone.set_param({"nthread": 1})
    lgb_booster = lgb.booster_

    def lgb_alone(m: Any) -> Any:  # on as many threads as the fast call uses
        return lgb_booster.predict(m, **({"num_threads": 1} if len(m) < FEW else {}))

    def xgb_alone(m: Any) -> Any:
        return (alone if len(m) < FEW else booster).inplace_predict(m, validate_features=False)

    return {
        "lightgbm": (lgb, mlflow.lightgbm, lgb_alone),
        "xgboost": (xgb, mlflow.xgboost, xgb_alone),
        "scikit-learn": (gb, mlflow.sklearn, lambda m: None),
    }


def _call(model: LoadedModel) -> Callable[[np.ndarray[Any, Any]], Any]:
    """What the batcher's model step does with a float matrix (gateway/batching.py): the
    matrix call when the model has one, else a frame; one call for labels and scores
    when the loader showed the labels are the scores' argmax, else two."""
    cols = pd.Index(FEATURES, dtype=object)
    classes = np.asarray(model.raw.classes_)
    on_matrix = model.predict_matrix is not None
    predict = model.predict_matrix if on_matrix else model.predict
    proba = model.proba_matrix if on_matrix else model.predict_proba
    assert predict is not None and proba is not None
    one_call = model.labels_from_scores and on_matrix

    def call(mat: np.ndarray[Any, Any]) -> Any:
        x: Any = mat if on_matrix else pd.DataFrame(mat, columns=cols, copy=False)
        if one_call:
            p = np.asarray(proba(x), dtype=np.float64)
            return labels_of(p, classes, lambda r: predict(x[r])), p
        return np.asarray(predict(x)), np.asarray(proba(x), dtype=np.float64)

    return call


def _interleaved(fns: list[Callable[[], Any]], runs: int) -> list[float]:
    """Median microseconds of each of ``fns``, called in turn ``runs`` times."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t)
    return [1e6 * statistics.median(t) for t in times]


def _parts(name: str, est: Any, own: LoadedModel, runs: int, rows: Any) -> None:
    """Where the model's own call spends its time, step by step (``--parts``)."""
    if name == "scikit-learn":
        return
    cols = pd.Index(FEATURES, dtype=object)
    if name == "lightgbm":
        booster = est.booster_

        def threads(m: Any) -> Any:
            return booster.predict(m)

        def one(m: Any) -> Any:
            return booster.predict(m, num_threads=1)
    else:
        booster, alone = est.get_booster(), est.get_booster().copy()
        alone.set_param({"nthread": 1})

        def threads(m: Any) -> Any:
            return booster.inplace_predict(m, validate_features=False)

        def one(m: Any) -> Any:
            return alone.inplace_predict(m, validate_features=False)

    for n in (1, 1000):
        mat = np.ascontiguousarray(rows[:n])
        frame = pd.DataFrame(mat, columns=cols)
        steps = {
            "MLflow pyfunc predict (frame)": partial(own.predict, frame),
            "the model's predict (frame)": partial(est.predict, frame),
            "the model's predict_proba (frame)": partial(est.predict_proba, frame),
            "the booster on the matrix, its threads": partial(threads, mat),
            "the booster on the matrix, one thread": partial(one, mat),
        }
        us = _interleaved(list(steps.values()), runs if n == 1 else max(20, runs // 10))
        for step, t in zip(steps, us, strict=True):
            print(f"  {name:<12} {n:>5} rows  {step:<42} {t:12.1f} us")


def _save(est: Any, flavor: Any, x: pd.DataFrame, y: Any, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extra = (
            {"serialization_format": "cloudpickle"} if flavor.__name__ == "mlflow.sklearn" else {}
        )
        flavor.save_model(
            est,
            str(path),
            signature=infer_signature(x.head(), y[:5]),
            input_example=x.head(3),
            pip_requirements=[],
            **extra,
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--only", choices=["lightgbm", "xgboost", "scikit-learn"], default=None)
    ap.add_argument("--parts", action="store_true", help="also time each step of the own call")
    args = ap.parse_args()
    X, y = make_classification(n_samples=4000, n_features=30, n_informative=12, random_state=0)
    frame = pd.DataFrame(X, columns=FEATURES)
    rows = np.random.default_rng(1).standard_normal((1000, len(FEATURES)))
    print(f"{'model':<14} {'rows':>5} {'own call us':>12} {'fast call us':>13} "
          f"{'booster alone us':>17} {'own/fast':>9}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for name, (est, flavor, alone) in _models(frame, y).items():
            if args.only and name != args.only:
                continue
            path = Path(tmp) / name
            _save(est, flavor, frame, y, path)
            t0 = time.perf_counter()
            fast = load_model(REF, path)
            t1 = time.perf_counter()
            own = load_model(REF, path, fast_calls=False)
            t2 = time.perf_counter()
            assert fast.fast_trees, fast.call_note
            own_call, fast_call = _call(own), _call(fast)
            for n in (1, 1000):
                mat = np.ascontiguousarray(rows[:n])
                a, b = own_call(mat), fast_call(mat)
                assert np.array_equal(a[0], b[0]) and np.array_equal(np.asarray(a[1]), b[1])
                runs = args.runs if n == 1 else max(20, args.runs // 10)
                fns = [partial(own_call, mat), partial(fast_call, mat)]
                if name != "scikit-learn":
                    fns.append(partial(alone, mat))
                us = _interleaved(fns, runs)
                floor = f"{us[2]:17.1f}" if len(us) > 2 else f"{'-':>17}"
                print(f"{name:<14} {n:>5} {us[0]:12.1f} {us[1]:13.1f} {floor} "
                      f"{us[0] / us[1]:8.1f}x")  # fmt: skip
            if args.parts:
                _parts(name, est, own, args.runs, rows)
            print(f"{'':<14} load with the probe {1000 * (t1 - t0):.0f} ms, "
                  f"without {1000 * (t2 - t1):.0f} ms: {fast.call_note}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
