"""The layout's rules, read off every import of every module (those inside functions too).

Layers, from the bottom: the leaves (settings, errors, timeutil, ids, worker), domain/
(pure), store/ (every SQL statement), registry/ (the only MLflow importer), the
features (monitor/, retrain/, explain/ and the others), service.py (the facade), and the
two interfaces, gateway/ (HTTP) and cli/ (click). An arrow that points up fails here.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "chronoml"
LEAVES = {"settings", "errors", "timeutil", "ids", "worker", "window", "digests"}
MAX_LINES = 500
# the web stack, the CLI toolkit and the MLflow client each belong to one package
OWNERS = {
    "sqlalchemy": {"store"},
    "alembic": {"store"},
    "psycopg": {"store"},
    "mlflow": {"registry"},
    "starlette": {"gateway"},
    "uvicorn": {"gateway"},
    "click": {"cli"},
    "duckdb": {"datasets"},
    "boto3": {"store"},
    "botocore": {"store"},
}
# modules that run outside the server's layering: the demo script is a user of
# MLflow like any training script, and the retraining child process is the user's
# training code's host
MLFLOW_EXCEPTIONS = {"cli/demo.py", "retrain/child.py"}
DOMAIN_FORBIDDEN = {
    "sqlalchemy",
    "psycopg",
    "starlette",
    "uvicorn",
    "mlflow",
    "click",
    "httpx",
    "jinja2",
    "threading",
    "concurrent",
    "asyncio",
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, as a path under src/chronoml
    target: str  # the imported module, dotted
    line: int
    local: bool  # inside a function
    reason: bool  # a "# lazy:" comment on the line or the one above


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "migrations" not in p.parts)


def _imports(path: Path) -> list[Import]:
    rel = path.relative_to(SRC).as_posix()
    text = path.read_text()
    lines = text.splitlines()
    tree = ast.parse(text)
    package = ["chronoml", *path.relative_to(SRC).parent.parts]
    found: list[Import] = []

    def reason_at(lineno: int) -> bool:
        here = lines[lineno - 1]
        above = lines[lineno - 2].strip() if lineno >= 2 else ""
        return "# lazy:" in here or above.startswith("# lazy:")

    # a "# lazy:" comment above a run of import statements explains the whole run
    explained: set[int] = set()
    for node in ast.walk(tree):
        run_reason = False
        body = getattr(node, "body", None)
        for stmt in body if isinstance(body, list) else []:
            if isinstance(stmt, ast.Import | ast.ImportFrom):
                run_reason = run_reason or reason_at(stmt.lineno)
                if run_reason:
                    explained.add(stmt.lineno)
            else:
                run_reason = False

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            targets: list[str] = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package[: len(package) - child.level + 1]
                    mod = ".".join([*base, child.module] if child.module else base)
                else:
                    mod = child.module or ""
                # `from chronoml.x import y` may name a module y: count both
                targets = [mod] + [f"{mod}.{a.name}" for a in child.names]
            for t in targets:
                found.append(Import(rel, t, child.lineno, inside, child.lineno in explained))
            visit(child, inside)

    visit(tree, False)
    return found


ALL = {p.relative_to(SRC).as_posix(): _imports(p) for p in _modules()}


def _layer(rel: str) -> str:
    if rel == "__main__.py":  # `python -m chronoml` is the command line
        return "cli"
    first = rel.split("/", 1)[0]
    return first.removesuffix(".py")


def _own_layer(target: str) -> str | None:
    parts = target.split(".")
    if parts[0] != "chronoml" or len(parts) < 2:
        return None
    candidate = parts[1]
    if (SRC / candidate).is_dir() or (SRC / f"{candidate}.py").exists():
        return candidate
    return None


def _violations(check: str) -> list[str]:
    out: list[str] = []
    for rel, imports in ALL.items():
        layer = _layer(rel)
        for imp in imports:
            top = imp.target.split(".")[0]
            own = _own_layer(imp.target)
            where = f"{rel}:{imp.line} imports {imp.target}"
            if check == "domain" and layer == "domain":
                if top in DOMAIN_FORBIDDEN or (own and own not in {"domain", *LEAVES}):
                    out.append(where)
                if own == "worker":
                    out.append(where + " (domain code starts no threads)")
            elif check == "store" and layer == "store":
                if own and own not in {"store", "domain", *LEAVES}:
                    out.append(where)
            elif check == "leaves" and layer in LEAVES:
                if own and own not in LEAVES:
                    out.append(where)
            elif check == "owners":
                owners = OWNERS.get(top)
                if owners and layer not in owners and rel not in MLFLOW_EXCEPTIONS:
                    out.append(where)
            elif (
                (check == "gateway" and own == "gateway" and layer not in {"gateway", "cli"})
                or (
                    check == "service"
                    and own == "service"
                    and layer
                    in {
                        "monitor",
                        "retrain",
                        "explain",
                        "registry",
                        "store",
                        "domain",
                    }
                )
                or (check == "cli" and own == "cli" and layer != "cli")
            ):
                out.append(where)
    return sorted(set(out))


@pytest.mark.parametrize(
    "check",
    ["domain", "store", "leaves", "owners", "gateway", "service", "cli"],
)
def test_no_arrow_points_the_wrong_way(check: str) -> None:
    assert _violations(check) == []


def test_the_join_engine_stands_alone() -> None:
    """datasets/ works on frames and files: no store, no registry, no MLflow."""
    bad = [
        f"{rel}:{imp.line} imports {imp.target}"
        for rel, imports in ALL.items()
        if _layer(rel) == "datasets"
        for imp in imports
        if imp.target.split(".")[0] == "mlflow" or _own_layer(imp.target) in {"store", "registry"}
    ]
    assert bad == []


def test_no_module_holds_two_ideas() -> None:
    long = {rel: n for rel in ALL if (n := len((SRC / rel).read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_imports_inside_functions_say_why() -> None:
    """A function-local import exists for start-up time only, and says so with ``# lazy:``."""
    unexplained: list[str] = []
    for rel, imports in ALL.items():
        seen: set[int] = set()
        for imp in imports:
            if imp.local and not imp.reason and imp.line not in seen:
                seen.add(imp.line)
                unexplained.append(f"{rel}:{imp.line} {imp.target}")
    assert unexplained == []


def test_the_checks_see_what_they_check(tmp_path: Path) -> None:
    """The walker finds imports inside functions and resolves relative ones."""
    probe = SRC / "domain" / "_probe_for_test.py"
    probe.write_text("def f():\n    import sqlalchemy\n    from ..store import x\n")
    try:
        found = _imports(probe)
    finally:
        probe.unlink()
    targets = {(i.target, i.local) for i in found}
    assert ("sqlalchemy", True) in targets
    assert ("chronoml.store", True) in targets
