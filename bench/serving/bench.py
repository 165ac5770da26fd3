"""Serving: chronoml's gateway against `mlflow models serve` and an empty ASGI app.

One registered GradientBoostingClassifier on 30 numeric features. In turn,
on the same machine and with the same closed-loop load generator (wrk:
16 connections, single-row requests, fixed duration; then 1000-row
requests), this serves it with:

- ``mlflow models serve --env-manager local`` (MLflow's own server),
- ``chronoml server`` with durable logging (SQLite, synchronous=FULL) and a
  90/10 A/B split between two versions, sticky by a unit header,
- an empty ASGI app on the same HTTP stack that returns a constant (the
  ceiling of the stack: no parsing, no model, no log).

It prints throughput, p50 and p99 latency, and server CPU per request
(user+system time of the server's processes over the run) for each, the
ratios the goals are stated in, and whether each goal is met:

- chronoml >= 20x mlflow's throughput, p99 <= 1/10 of mlflow's,
- chronoml >= 50% of the empty app's throughput,
- <= 1 ms server CPU per single-row request, logging included,
- a 1000-row request's p50 (one connection) at most 1/5 of mlflow's, and at
  most 3x the floor: ``orjson.loads`` of the same body plus the model's own
  ``predict_proba`` on those rows (a frame built beforehand, not timed), each
  the median of 31 in one process right after the load runs.

    .venv/bin/python bench/serving/bench.py                 # about 8 minutes
    .venv/bin/python bench/serving/bench.py --duration 5 --skip-mlflow

Needs ``wrk`` (``apt-get install wrk``). Exit code 0: every goal met; 2:
some goal missed; 1: the benchmark could not run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
FEATURES = [f"f{i:02d}" for i in range(30)]
EMPTY_APP = """
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif m["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    while (await receive()).get("more_body"):
        pass
    body = b'{"predictions": [0]}'
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
"""
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("BENCH_AUTH")
if auth ~= nil and auth ~= "" then wrk.headers["Authorization"] = auth end
local body = io.open(os.getenv("BENCH_BODY")):read("*a")
local counter = 0
request = function()
  counter = counter + 1
  wrk.headers["X-Chronoml-Unit"] = "customer-" .. (counter % 100000)
  return wrk.format(nil, nil, nil, body)
end
"""


@dataclass
class Run:
    server: str
    load: str
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_req: float
    errors: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_cpu_seconds(pid: int) -> float:
    """User+system CPU of ``pid`` and its descendants (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            raw = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        stats[int(d)] = fields
        children.setdefault(int(fields[1]), []).append(int(d))
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            f = stats[p]
            total += (int(f[11]) + int(f[12])) / tick  # utime, stime
        todo.extend(children.get(p, []))
    return total


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def wrk(
    url: str, body: Path, connections: int, duration: float, work: Path, auth: str = ""
) -> dict[str, Any]:
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT)
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration:g}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        env={**os.environ, "BENCH_BODY": str(body), "BENCH_AUTH": auth},
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if m is None:
            raise RuntimeError(f"no {label}% in wrk output:\n{out}")
        v = float(m.group(1))
        return {"us": v / 1000, "ms": v, "s": v * 1000}[m.group(2)]

    reqs = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: .*timeout (\d+)", out)
    return {
        "requests": reqs,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": ms("50"),
        "p99": ms("99"),
        "errors": (int(errs.group(1)) if errs else 0) + (int(sock.group(1)) if sock else 0),
        "raw": out,
    }


def setup(
    work: Path, src: Path | None = None, privacy: bool = False, tag: str = "before"
) -> dict[str, str]:
    """Train, register two versions, deploy chronoml's 90/10 split; returns the env.

    With ``src``, all of it runs on that copy of chronoml's code (first on
    PYTHONPATH) in a home of its own: the code before a change, measured in
    the same run as the code after it.
    """
    env = {
        **os.environ,
        "CHRONOML_HOME": str(work / (f"home-{tag}" if src else "home")),
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    if src is not None:
        env["PYTHONPATH"] = str(src)
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / f'mlflow-{tag}.db'}"
    code = f"""
import mlflow, sklearn, numpy as np, pandas as pd
from mlflow.models import infer_signature
from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingClassifier
import chronoml
X, y = make_classification(n_samples=4000, n_features=30, n_informative=12, random_state=0)
X = pd.DataFrame(X, columns={FEATURES!r})
chronoml.setup_mlflow("bench")
snap = chronoml.snapshot(X.assign(label=y), name="bench")
for seed in (0, 1):
    m = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=seed).fit(X, y)
    with mlflow.start_run():
        chronoml.log_snapshot(snap)
        mlflow.sklearn.log_model(m, name="model", registered_model_name="bench",
            signature=infer_signature(X.head(), y[:5]), serialization_format="cloudpickle",
            pip_requirements=[f"scikit-learn=={{sklearn.__version__}}"])
X.head(1000).to_json({str(work / "rows.json")!r}, orient="split", index=False)
"""
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=work)
    cli = [sys.executable, "-m", "chronoml.cli"] if src is None else [sys.executable, "-c",
           "import sys; from chronoml.cli import main; sys.argv[0] = 'chronoml'; main()"]  # fmt: skip
    for args in (
        ["deploy", "bench", "models:/bench/1"],
        ["deploy", "bench", "models:/bench/2", "--weight", "10"],
    ):
        subprocess.run([*cli, *args], env=env, check=True, cwd=work, stdout=subprocess.DEVNULL)
    if privacy:  # a policy that hashes one feature and the unit key and drops another
        subprocess.run(
            [*cli, "privacy", "set", "bench", "--feature", "f00=hash", "--feature", "f01=drop",
             "--unit-key", "hash"],
            env=env, check=True, cwd=work, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    made = subprocess.run(
        [*cli, "token", "create", "bench-client", "--role", "predictor"],
        env=env, check=src is None, cwd=work, capture_output=True, text=True,
    )  # fmt: skip
    if made.returncode == 0:  # code from before tokens existed answers without one
        env["BENCH_AUTH"] = "Bearer " + made.stdout.strip().splitlines()[-1]
        viewer = subprocess.run(
            [*cli, "token", "create", "bench-metrics", "--role", "viewer"],
            env=env, check=True, cwd=work, capture_output=True, text=True,
        )  # fmt: skip
        env["BENCH_VIEWER"] = "Bearer " + viewer.stdout.strip().splitlines()[-1]
    return env


_FLOOR = """
import json, statistics, sys, time
import mlflow, orjson, pandas as pd
m = mlflow.sklearn.load_model("models:/bench/1")
body = open(sys.argv[1], "rb").read()
split = orjson.loads(body)["dataframe_split"]
frame = pd.DataFrame(split["data"], columns=split["columns"])
parse, predict = [], []
for _ in range(31):
    t = time.perf_counter()
    orjson.loads(body)
    parse.append(time.perf_counter() - t)
    t = time.perf_counter()
    m.predict_proba(frame)
    predict.append(time.perf_counter() - t)
print(json.dumps(1000 * (statistics.median(parse) + statistics.median(predict))))
"""


def floor_ms(work: Path, env: dict[str, str], many: Path) -> float:
    """The 1000-row floor: parsing the body with orjson plus the model's own predict_proba."""
    got = subprocess.run(
        [sys.executable, "-c", _FLOOR, str(many)], env=env, cwd=work, check=True,
        capture_output=True, text=True,
    )  # fmt: skip
    return float(got.stdout.strip().splitlines()[-1])


def bodies(work: Path) -> tuple[Path, Path]:
    split = json.loads((work / "rows.json").read_text())
    one, many = work / "one.json", work / "many.json"
    one.write_text(
        json.dumps({"dataframe_split": {"columns": split["columns"], "data": split["data"][:1]}})
    )
    many.write_text(
        json.dumps({"dataframe_split": {"columns": split["columns"], "data": split["data"][:1000]}})
    )
    return one, many


def serve(
    name: str,
    port: int,
    env: dict[str, str],
    work: Path,
    workers: int,
    extra: list[str] | None = None,
) -> tuple[subprocess.Popen[bytes], str, str]:
    """Start one server (a chronoml one with ``extra`` flags); returns it, the scoring URL and
    a URL to poll for readiness."""
    base = f"http://127.0.0.1:{port}"
    log = open(work / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
    if name == "mlflow":
        cmd = [
            str(VENV_BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            "models:/bench/1",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ]
        url, ready = f"{base}/invocations", f"{base}/ping"
    elif name.startswith("chronoml") or name == "before":
        entry = ["-m", "chronoml.cli"]
        if name == "chronoml-nocommit":
            entry = [str(HERE / "no_commitments.py")]
        cmd = [
            sys.executable,
            *entry,
            "server",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--workers",
            str(workers),
            # the code before a change is served open too: older code may predate tokens
            *(["--open-predict", "--no-access-log"] if name == "chronoml-open" else []),
            *(
                _open_flags(entry, env, work)
                if name == "before" and not env.get("BENCH_GUARDED")
                else []
            ),
            *(extra or []),
        ]
        url, ready = f"{base}/v1/endpoints/bench/predict", f"{base}/health"
    else:
        (work / "empty_app.py").write_text(EMPTY_APP)
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "empty_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--workers",
            str(workers),
        ]
        url, ready = f"{base}/", f"{base}/"
    proc = subprocess.Popen(
        cmd, env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    wait_http(ready, proc)
    return proc, url, ready


def _open_flags(entry: list[str], env: dict[str, str], work: Path) -> list[str]:
    """``--open-predict --no-access-log`` where that code has them: code from before
    tokens and the access log answers without a token and writes no access line anyway."""
    usage = subprocess.run(
        [sys.executable, *entry, "server", "--help"],
        env=env, cwd=work, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return ["--open-predict", "--no-access-log"] if "--open-predict" in usage else []


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def measure(
    name: str,
    env: dict[str, str],
    work: Path,
    one: Path,
    many: Path,
    duration: float,
    workers: int,
    repeats: int,
) -> list[Run]:
    port = free_port()
    proc, url, _ = serve(name, port, env, work, workers)
    # the predictor token on every request, except where predict is open (or had no auth)
    auth = env.get("BENCH_AUTH", "") if name in ("chronoml", "chronoml-nocommit", "before") else ""
    runs: list[Run] = []
    try:
        wrk(url, one, 16, 2, work, auth)  # warm up
        for load, body, conns in (("1 row x16", one, 16), ("1000 rows x1", many, 1)):
            if name == "chronoml" and load != "1 row x16":
                batches(url, env)
            got = []
            for _ in range(repeats):
                cpu0 = tree_cpu_seconds(proc.pid)
                r = wrk(url, body, conns, duration, work, auth)
                cpu = tree_cpu_seconds(proc.pid) - cpu0
                got.append(
                    Run(
                        name,
                        load,
                        r["requests"],
                        r["rps"],
                        r["p50"],
                        r["p99"],
                        1000 * cpu / max(r["requests"], 1),
                        r["errors"],
                    )
                )
            runs.append(
                Run(
                    name,
                    load,
                    int(statistics.median(g.requests for g in got)),
                    statistics.median(g.rps for g in got),
                    statistics.median(g.p50_ms for g in got),
                    statistics.median(g.p99_ms for g in got),
                    statistics.median(g.cpu_ms_per_req for g in got),
                    sum(g.errors for g in got),
                )
            )
    finally:
        stop(proc)
    return runs


def batches(url: str, env: dict[str, str]) -> None:
    """Print how many requests chronoml's predict calls held on average, per variant."""
    import httpx

    auth = env.get("BENCH_VIEWER", "")  # /metrics needs a viewer, not the predictor's token
    metrics = url.split("/v1/")[0] + "/metrics"
    text = httpx.get(metrics, timeout=10, headers={"Authorization": auth} if auth else {}).text
    got: dict[str, dict[str, float]] = {}
    for m in re.finditer(
        r'^chronoml_batch_requests_(sum|count)\{endpoint="[^"]*",variant="([^"]*)"\} (\S+)$',
        text,
        re.M,
    ):
        got.setdefault(m.group(2), {})[m.group(1)] = float(m.group(3))
    for variant, v in sorted(got.items()):
        if v.get("count"):
            print(f"chronoml {variant}: {v['sum'] / v['count']:.1f} requests per predict call")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--duration", type=float, default=10, help="seconds per load run [10]")
    ap.add_argument("--repeats", type=int, default=3, help="runs per load, median reported [3]")
    ap.add_argument(
        "--workers", type=int, default=1, help="server processes for chronoml and the empty app [1]"
    )
    ap.add_argument("--skip-mlflow", action="store_true")
    ap.add_argument(
        "--before",
        type=Path,
        help="a copy of chronoml's src from before a change: served too, in the same run",
    )
    ap.add_argument(
        "--after",
        type=Path,
        help="serve this copy of chronoml's src as `chronoml` instead of this checkout's code "
        "(with --before: two past versions against each other, e.g. the two ends of a change)",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="serve the contenders in turn this many times, alternating the order, and report "
        "medians over rounds (the same machine noise for each) [1]",
    )
    ap.add_argument(
        "--open",
        action="store_true",
        help="also serve with --open-predict (no token check) to price the token check",
    )
    ap.add_argument(
        "--privacy",
        action="store_true",
        help="chronoml serves under a privacy policy (f00 and the unit key hashed, f01 "
        "dropped); with --before, the price of applying it",
    )
    ap.add_argument(
        "--commitments-off",
        action="store_true",
        help="also serve with the decision log's evidence step removed (chronoml-nocommit), "
        "to price the commitments on vs off in one run; needs --workers 1",
    )
    ap.add_argument(
        "--before-guarded",
        action="store_true",
        help="serve the --before code as chronoml is served, with a predictor token and the "
        "access log (it must have both), to price a change to the token check or the log",
    )
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args(argv)
    if args.commitments_off and args.workers != 1:
        print("--commitments-off needs --workers 1", file=sys.stderr)
        return 1
    if shutil.which("wrk") is None:
        print("needs wrk: apt-get install wrk", file=sys.stderr)
        return 1
    # the HTTP stack every server here runs on; uvicorn falls back to asyncio
    # and h11 without them, which would measure a different (slower) stack
    missing = [m for m in ("uvloop", "httptools") if importlib.util.find_spec(m) is None]
    if missing:
        print(
            f"needs {' and '.join(missing)}: make install",
            file=sys.stderr,
        )
        return 1
    work = Path(tempfile.mkdtemp(prefix="chronoml-bench-serving-"))
    try:
        env = (
            setup(work, args.after.resolve(), args.privacy, tag="after")
            if args.after
            else setup(work, privacy=args.privacy)
        )
        envs = {"before": setup(work, args.before.resolve())} if args.before else {}
        if args.before_guarded and envs:
            if "BENCH_AUTH" not in envs["before"]:
                print("--before-guarded: that code has no tokens", file=sys.stderr)
                return 1
            envs["before"]["BENCH_GUARDED"] = "1"
        one, many = bodies(work)
        runs: list[Run] = []
        names = ["empty", "chronoml"] + (["chronoml-open"] if args.open else [])
        names += ["chronoml-nocommit"] if args.commitments_off else []
        names += (["before"] if args.before else []) + ([] if args.skip_mlflow else ["mlflow"])
        rounds: list[Run] = []
        for i in range(args.rounds):
            order = names if i % 2 == 0 else [names[0], *reversed(names[1:])]
            for name in order:
                rounds += measure(
                    name, envs.get(name, env), work, one, many, args.duration, args.workers,
                    args.repeats,
                )  # fmt: skip
        runs = _medians(rounds)
        return report(runs, work, floor_ms(work, env, many))
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _medians(rounds: list[Run]) -> list[Run]:
    """One run per (server, load): medians over the rounds, errors summed."""
    keys = list(dict.fromkeys((r.server, r.load) for r in rounds))
    out = []
    for server, load in keys:
        got = [r for r in rounds if (r.server, r.load) == (server, load)]
        out.append(
            Run(
                server,
                load,
                int(statistics.median(g.requests for g in got)),
                statistics.median(g.rps for g in got),
                statistics.median(g.p50_ms for g in got),
                statistics.median(g.p99_ms for g in got),
                statistics.median(g.cpu_ms_per_req for g in got),
                sum(g.errors for g in got),
            )
        )
    return out


def report(runs: list[Run], work: Path, floor: float) -> int:
    print(
        f"{'server':<10} {'load':<14} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>11} {'errors':>7}"
    )
    for r in runs:
        print(
            f"{r.server:<10} {r.load:<14} {r.rps:>9.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.cpu_ms_per_req:>11.3f} {r.errors:>7}"
        )
    by = {(r.server, r.load): r for r in runs}
    c1, cn = by[("chronoml", "1 row x16")], by[("chronoml", "1000 rows x1")]
    e1 = by[("empty", "1 row x16")]
    goals: list[tuple[str, float, str, bool]] = []
    if ("mlflow", "1 row x16") in by:
        m1, mn = by[("mlflow", "1 row x16")], by[("mlflow", "1000 rows x1")]
        goals.append(("throughput vs mlflow", c1.rps / m1.rps, ">= 20x", c1.rps >= 20 * m1.rps))
        goals.append(
            ("p99 vs mlflow", c1.p99_ms / m1.p99_ms, "<= 0.1", c1.p99_ms <= m1.p99_ms / 10)
        )
        goals.append(
            (
                "1000 rows: p50 vs mlflow",
                cn.p50_ms / mn.p50_ms,
                "<= 0.2",
                cn.p50_ms <= mn.p50_ms / 5,
            )
        )
    goals.append(("throughput vs empty app", c1.rps / e1.rps, ">= 0.5", c1.rps >= 0.5 * e1.rps))
    goals.append(
        ("CPU ms per 1-row request", c1.cpu_ms_per_req, "<= 1 ms", c1.cpu_ms_per_req <= 1.0)
    )
    print(f"the 1000-row floor (orjson.loads + the model's predict_proba): {floor:.2f} ms")
    goals.append(
        ("1000 rows: p50 vs the floor", cn.p50_ms / floor, "<= 3x", cn.p50_ms <= 3 * floor)
    )
    if ("chronoml-nocommit", "1 row x16") in by:
        # issue 11: commitments at most 10% of the server CPU of a 1-row request (on vs off)
        off = by[("chronoml-nocommit", "1 row x16")].cpu_ms_per_req
        share = (c1.cpu_ms_per_req - off) / c1.cpu_ms_per_req
        print(f"commitments add {1000 * (c1.cpu_ms_per_req - off):.0f} us of CPU per 1-row request")
        goals.append(("commitments' CPU share", share, "<= 0.10", share <= 0.10))
    print()
    for what, value, goal, ok in goals:
        print(f"{what:<28} {value:>8.3f}  goal {goal:<8} {'met' if ok else 'NOT met'}")
    for other in ("chronoml-open", "before"):
        if (other, "1 row x16") in by:
            o = by[(other, "1 row x16")]
            print(
                f"chronoml vs {other}: {c1.rps / o.rps:.3f}x the req/s, "
                f"{c1.p99_ms / o.p99_ms:.3f}x the p99, {c1.cpu_ms_per_req / o.cpu_ms_per_req:.3f}x "
                "the CPU per request"
            )
    bad = [r for r in runs if r.errors]
    if bad:
        print(f"errors during runs: {[(r.server, r.load, r.errors) for r in bad]}; logs in {work}")
    return 0 if all(ok for *_, ok in goals) and not bad else 2


if __name__ == "__main__":
    sys.exit(main())
