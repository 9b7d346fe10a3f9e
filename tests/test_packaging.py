"""pyproject.toml's package data is truthful: every entry names files that exist, and the
installed package carries every migration and the asset manifests."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _package_data() -> dict[str, list[str]]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)["tool"]["setuptools"]["package-data"]


def _declared(package: str) -> set[Path]:
    return {p for pattern in _package_data()[package] for p in (ROOT / package).glob(pattern)}


def test_every_package_data_entry_matches_a_file():
    for package, patterns in _package_data().items():
        for pattern in patterns:
            assert list((ROOT / package).glob(pattern)), f"{package}: {pattern} matches no file"


def test_migrations_and_manifests_are_declared():
    migrations = ROOT / "gis" / "migrations"
    needed = {migrations / "env.py", migrations / "script.py.mako", *(migrations / "versions").glob("*.py")}
    assert len(needed) >= 10
    assert needed <= _declared("gis")
    assets = ROOT / "maps" / "assets"
    assert {assets / "package.json", assets / "package-lock.json", assets / ".npmrc"} <= _declared("maps")
