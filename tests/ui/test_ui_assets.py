"""The chart libraries shipped in the package are the ones ``ui/package-lock.json`` pins.

The lockfile's integrity hashes are of the registry's tarballs, which cannot be
fetched here; what can be checked offline is that every file ``ui/build.mjs``
copies is shipped, that each shipped library carries the version banner of the
version the lockfile pins (and package.json pins exactly that version), that the
files are byte for byte the installed packages' when ``npm ci`` has run, and that
a library names no URL outside its licence comments.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import tomllib
from pathlib import Path

import pytest

from chronoml.gateway.views import ui

ROOT = Path(__file__).resolve().parents[2]
UI = ROOT / "ui"
STATIC = ROOT / "src" / "chronoml" / "gateway" / "static"
#: Files in static/ that are the project's own, not copied from a package.
OURS = {"charts.js", "docs.html", "grafana-dashboard.json"}
#: How each library's minified build opens: its name and version in a comment.
BANNERS = {
    "uplot": re.compile(r"\A/\*! https://github\.com/leeoniya/uPlot \(v(?P<v>[\d.]+)\) \*/"),
    "chart.js": re.compile(r"\A/\*!\n \* Chart\.js v(?P<v>[\d.]+)\n"),
    "chartjs-chart-matrix": re.compile(r"\A/\*!\n \* chartjs-chart-matrix v(?P<v>[\d.]+)\n"),
}


def _copied() -> list[tuple[str, str, str]]:
    """(package, path inside it, shipped name) for every file the build copies."""
    text = (UI / "build.mjs").read_text()
    pairs = re.findall(r'\["((?:@[^/"]+/)?[^/"]+)/([^"]+)", "([^"]+)"\]', text)
    assert pairs, "build.mjs lists no file to copy"
    return [(pkg, inner, out) for pkg, inner, out in pairs]


def _locked() -> dict[str, str]:
    lock = json.loads((UI / "package-lock.json").read_text())
    return {
        k.removeprefix("node_modules/"): v["version"]
        for k, v in lock["packages"].items()
        if k.startswith("node_modules/")
    }


def test_package_json_pins_exact_versions_the_lockfile_holds() -> None:
    pins = json.loads((UI / "package.json").read_text())["dependencies"]
    lock = json.loads((UI / "package-lock.json").read_text())
    locked = _locked()
    assert lock["packages"][""]["dependencies"] == pins
    for name, version in pins.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} is not pinned exactly: {version}"
        assert locked[name] == version, name
        assert lock["packages"][f"node_modules/{name}"]["integrity"].startswith("sha512-")
    # every package a shipped file comes from is a pinned dependency
    assert {pkg for pkg, _, _ in _copied()} <= set(pins)


def test_shipped_libraries_carry_the_locked_versions() -> None:
    locked = _locked()
    seen = set()
    for pkg, _inner, out in _copied():
        path = STATIC / out
        assert path.is_file(), f"{out} is not shipped: run `cd ui && npm ci && npm run build`"
        if out.endswith(".js"):
            m = BANNERS[pkg].match(path.read_text())
            assert m is not None, f"{out} does not open with {pkg}'s banner"
            assert m["v"] == locked[pkg], (
                f"{out} is {pkg} {m['v']}, the lockfile pins {locked[pkg]}"
            )
            seen.add(pkg)
    assert seen == set(BANNERS)


def test_static_holds_only_our_files_and_the_built_ones() -> None:
    built = {out for _, _, out in _copied()}
    assert {p.name for p in STATIC.iterdir()} == OURS | built
    # the server serves each of them, and the package ships them
    assert built | {"charts.js"} <= set(ui._ASSETS)
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = data["tool"]["setuptools"]["package-data"]["chronoml"]
    for name in built:
        assert any(fnmatch.fnmatch(f"gateway/static/{name}", g) for g in globs), name
    base = (ROOT / "src" / "chronoml" / "templates" / "ui" / "base.html").read_text()
    for name in built:
        assert f'"/ui/static/{name}"' in base, f"no page loads {name}"


def test_shipped_files_are_the_installed_packages_files() -> None:
    if not (UI / "node_modules").is_dir():
        why = "ui/node_modules is absent (`cd ui && npm ci` installs the locked packages)"
        if os.environ.get("CI") == "true":  # .ci/run installs them: never skipped there
            pytest.fail(why)
        pytest.skip(why)
    locked = _locked()
    for pkg, inner, out in _copied():
        installed = json.loads((UI / "node_modules" / pkg / "package.json").read_text())
        assert installed["version"] == locked[pkg], pkg
        src = (UI / "node_modules" / pkg / inner).read_bytes()
        assert (STATIC / out).read_bytes() == src, f"{out} differs from {pkg}'s {inner}"


def test_libraries_name_no_url_outside_their_licence_comments() -> None:
    # a URL in a licence comment is never fetched; one in code could be
    for name in {out for _, _, out in _copied()} | {"charts.js"}:
        text = (STATIC / name).read_text()
        code = re.sub(r"/\*!.*?\*/", "", text, flags=re.S)
        found = re.findall(r"(?:https?:)?//[a-z0-9-]+\.[a-z0-9.-]+", code, flags=re.I)
        assert not found, f"{name} names {found[:3]}"
