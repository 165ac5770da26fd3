"""Goal: ``chronoml --help`` starts, prints and exits in <= 0.3 s (median of 15
fresh processes of the installed ``chronoml`` script).

Anchors, run in the same venv and interleaved with it, round by round:
- ``python -c pass``: the interpreter's own start-up, the floor;
- ``python -c "import click"``: the floor for any click CLI;
- ``python -c "import mlflow"``: what a CLI that imports MLflow eagerly would pay.

When the goal is missed (or with ``--importtime``) it runs
``python -X importtime -c "import chronoml.cli"`` and prints the imports that
cost the most, with the chain that pulled each one in.

    .venv/bin/python bench/cli_startup.py
    .venv/bin/python bench/cli_startup.py --runs 5 --importtime
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

GOAL_S = 0.3


@dataclass(frozen=True)
class Import:
    depth: int
    self_us: int
    cumulative_us: int
    name: str


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def parse_importtime(stderr: str) -> list[Import]:
    out = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cum, raw = line.split(":", 1)[1].split("|", 2)
        depth = (len(raw) - len(raw.lstrip(" ")) - 1) // 2
        out.append(Import(depth, int(self_us.strip()), int(cum.strip()), raw.strip()))
    return out


def importers(imports: list[Import], i: int) -> list[str]:
    """The chain of modules that imported ``imports[i]`` (children are listed before parents)."""
    chain = []
    depth = imports[i].depth
    for imp in imports[i + 1 :]:
        if imp.depth < depth:
            chain.append(imp.name)
            depth = imp.depth
            if depth == 0:
                break
    return chain


def report_imports(python: str, env: dict[str, str], top: int) -> None:
    proc = subprocess.run(
        [python, "-X", "importtime", "-c", "import chronoml.cli"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    imports = parse_importtime(proc.stderr)
    total = sum(i.self_us for i in imports)
    print(
        f"\nimports behind `import chronoml.cli` (python -X importtime, one run): "
        f"{len(imports)} modules, {total / 1000:.0f} ms"
    )
    by_package: dict[str, int] = defaultdict(int)
    count: dict[str, int] = defaultdict(int)
    for imp in imports:
        pkg = imp.name.split(".")[0]
        by_package[pkg] += imp.self_us
        count[pkg] += 1
    print("  by top-level package (self time summed):")
    for pkg, us in sorted(by_package.items(), key=lambda kv: -kv[1])[:top]:
        print(f"    {pkg:<24} {us / 1000:7.1f} ms  {count[pkg]:4d} modules")
    # the first module of each third-party package that was imported by one of ours
    print("  where they come from (cumulative time of the import, and who asked for it):")
    shown = 0
    for i, imp in sorted(enumerate(imports), key=lambda kv: -kv[1].cumulative_us):
        chain = importers(imports, i)
        if not chain or not chain[0].startswith("chronoml") or imp.name.startswith("chronoml"):
            continue
        print(
            f"    {imp.name:<24} {imp.cumulative_us / 1000:7.1f} ms  imported by "
            + " <- ".join(chain)
        )
        shown += 1
        if shown >= top:
            break
    print("  our own modules (cumulative):")
    for imp in sorted(
        (i for i in imports if i.name.startswith("chronoml")), key=lambda i: -i.cumulative_us
    )[:top]:
        print(f"    {imp.name:<24} {imp.cumulative_us / 1000:7.1f} ms")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument(
        "--venv", type=Path, default=Path(sys.prefix), help="[default: this interpreter's venv]"
    )
    ap.add_argument("--importtime", action="store_true", help="list costly imports even if met")
    ap.add_argument("--top", type=int, default=10)
    args = ap.parse_args(argv)
    python = str(args.venv / "bin" / "python")
    chronoml = str(args.venv / "bin" / "chronoml")
    if not Path(chronoml).exists():
        print(f"no chronoml script at {chronoml}: install the project (make install)")
        return 1
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    commands = {
        "chronoml --help": [chronoml, "--help"],
        "python -c pass": [python, "-c", "pass"],
        "python -c 'import click'": [python, "-c", "import click"],
        "python -c 'import mlflow'": [python, "-c", "import mlflow"],
    }
    print(
        f"CLI start-up: median of {args.runs} fresh processes each, interleaved; "
        f"goal `chronoml --help` <= {GOAL_S} s; load average {os.getloadavg()[0]:.2f} "
        f"on {os.cpu_count()} cores"
    )
    for cmd in commands.values():  # once untimed: bytecode caches, page cache
        timed(cmd, env)
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(args.runs):
        for name, cmd in commands.items():
            times[name].append(timed(cmd, env))
    med = {k: statistics.median(v) for k, v in times.items()}
    ours = med["chronoml --help"]
    for name, m in med.items():
        spread = f"min {min(times[name]):.3f}, max {max(times[name]):.3f}"
        ratio = "" if name == "chronoml --help" else f"  chronoml --help is {ours / m:.2f}x this"
        print(f"  {name:<28} median {m:.3f} s ({spread}){ratio}")
    met = ours <= GOAL_S
    print(
        f"  chronoml --help: {ours:.3f} s, {ours - med['python -c pass']:.3f} s above a bare "
        f"interpreter -> goal {'MET' if met else 'NOT MET'}"
    )
    if not met or args.importtime:
        report_imports(python, env, args.top)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0 if met else 2


if __name__ == "__main__":
    sys.exit(main())
