"""Checks of the five distributions as users receive them.

Two kinds of test live here:

* cheap checks of the source tree's packaging files, run in every environment;
* ``packaging``-marked tests that build every wheel and install them into
  fresh virtual environments the way users will. Those are slow (wheel
  builds, two venvs, downloads of third-party requirements) and do not depend
  on the Python running the suite, so they run in one environment per test
  run only: where ``GREENBACK_PACKAGING=1`` is set. hatch.toml sets it
  for one environment of the matrix (Python 3.13's); elsewhere
  they are skipped, with the reason shown in pytest's summary.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES_DIR = REPO / "packages"
VERSION_FILE = PACKAGES_DIR / "greenback-core" / "src" / "greenback" / "_version.py"

# distribution name -> the import package its wheel ships (None: metapackage)
DISTRIBUTIONS: Dict[str, Optional[str]] = {
    "greenback-core": "greenback",
    "greenback-asyncio": "greenback_asyncio",
    "greenback-trio": "greenback_trio",
    "greenback-sqlalchemy": "greenback_sqlalchemy",
    "greenback": None,
}

# entry points each distribution declares in the greenback.loops group
LOOP_ENTRY_POINTS: Dict[str, List[List[str]]] = {
    "greenback-asyncio": [["asyncio", "greenback_asyncio._integration:integration"]],
    "greenback-trio": [["trio", "greenback_trio._integration:integration"]],
}

ENABLE_VAR = "GREENBACK_PACKAGING"

SLOW_REASON = (
    "slow packaging test (builds wheels, creates venvs): runs in one environment "
    f"per test run, where {ENABLE_VAR}=1; hatch.toml enables it in the "
    "Python 3.13 environment"
)


def read_version() -> str:
    text = VERSION_FILE.read_text(encoding="utf-8")
    match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', text, re.M)
    assert match, f"no __version__ assignment in {VERSION_FILE}"
    return match.group(1)


# ---------------------------------------------------------------------------
# Cheap checks (every environment)


def test_version_is_pep440_and_in_changelog() -> None:
    version = read_version()
    # A normalized PEP 440 version, which hatchling keeps as written.
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?", version), version
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{version}]" in changelog, f"CHANGELOG.md has no section for {version}"


@pytest.mark.parametrize("dist", sorted(DISTRIBUTIONS))
def test_distribution_directory_is_complete(dist: str) -> None:
    root = PACKAGES_DIR / dist
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        assert (root / name).is_file(), f"{dist} has no {name}"
    # Each sdist carries its own copy of the license; the copies must not drift.
    assert (root / "LICENSE").read_bytes() == (REPO / "LICENSE").read_bytes()
    package = DISTRIBUTIONS[dist]
    if package is not None:
        assert (root / "src" / package / "py.typed").is_file(), f"{dist} is not marked typed"


def _requirements(pyproject: Dict[str, Any]) -> List[str]:
    project = pyproject["project"]
    found = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        found.extend(extra)
    return found


def test_sibling_pins_equal_the_version() -> None:
    # Every requirement of one greenback distribution on another pins exactly
    # this release's version: they are built and released together. (The pins
    # are written out, not computed at build time, so that Hatch can read each
    # member's metadata without building it.)
    tomllib = pytest.importorskip("tomllib", reason="tomllib is new in Python 3.11")
    version = read_version()
    pins = []
    for dist in DISTRIBUTIONS:
        data = tomllib.loads((PACKAGES_DIR / dist / "pyproject.toml").read_text(encoding="utf-8"))
        for requirement in _requirements(data):
            name = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]
            if name in DISTRIBUTIONS:
                pins.append((dist, requirement))
                assert requirement == f"{name}=={version}", (
                    f"{dist}: {requirement!r} must pin {name}=={version} "
                    "(the version in greenback-core's _version.py)"
                )
    assert len(pins) >= 4, pins  # the test looked at real pins


def _build_paths(hatch_build: Dict[str, Any]) -> List[Tuple[str, str]]:
    """(where, path) for every path a [tool.hatch.build] table names."""
    tables = [("tool.hatch.build", hatch_build)]
    tables += [(f"tool.hatch.build.targets.{name}", table) for name, table in hatch_build.get("targets", {}).items()]
    found = []
    for where, table in tables:
        for key in ("include", "exclude", "only-include", "packages", "sources"):
            value = table.get(key, [])
            found.extend((f"{where}.{key}", path) for path in (value if isinstance(value, list) else value.keys()))
        found.extend((f"{where}.force-include", source) for source in table.get("force-include", {}))
    return found


@pytest.mark.parametrize("dist", sorted(DISTRIBUTIONS))
def test_the_build_configuration_names_only_files_that_exist(dist: str) -> None:
    # A pattern that matches nothing (an sdist include of a folder moved
    # away, say) builds without a word from hatchling, so it is checked here.
    tomllib = pytest.importorskip("tomllib", reason="tomllib is new in Python 3.11")
    root = PACKAGES_DIR / dist
    data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    paths = _build_paths(data.get("tool", {}).get("hatch", {}).get("build", {}))
    assert paths, f"{dist} has no build configuration"
    dead = []
    for where, path in paths:
        relative = path.lstrip("/")
        if any(c in relative for c in "*?["):
            matches = any(root.glob(relative))
        else:
            matches = (root / relative).exists()
        if not matches:
            dead.append(f"{where}: {path!r}")
    assert not dead, f"packages/{dist}/pyproject.toml names what does not exist: {dead}"


# The files greenback 1.x installed (the RECORD of 1.3.0's wheel, less
# bytecode): an upgrade with pip deletes them after installing greenback-core.
GREENBACK_1X_FILES = {
    "__init__.py", "_impl.py", "_util.py", "_version.py", "py.typed",
    "_tests/__init__.py", "_tests/conftest.py", "_tests/test_impl.py", "_tests/test_util.py",
}


def test_the_metapackage_carries_the_core_files_greenback_1x_also_installed() -> None:
    # pip upgrades greenback 1.x by installing greenback-core first, then
    # uninstalling greenback 1.x (deleting every path its RECORD lists), then
    # installing the new metapackage: which must put those paths back.
    core = PACKAGES_DIR / "greenback-core" / "src" / "greenback"
    meta = PACKAGES_DIR / "greenback" / "src" / "greenback"
    shared = {str(f.relative_to(core)) for f in core.rglob("*") if f.is_file() and "__pycache__" not in f.parts} & GREENBACK_1X_FILES
    assert shared == {"__init__.py", "_version.py", "py.typed"}
    carried = {str(f.relative_to(meta)) for f in meta.rglob("*") if "__pycache__" not in f.parts}
    assert carried == shared
    for name in shared:  # the same files, not copies that could drift
        assert (meta / name).resolve() == (core / name).resolve(), name


def _published_floors() -> Dict[str, str]:
    """{distribution: lowest version} over every third-party requirement we publish."""
    import tomllib  # 3.11+: callers skip before

    floors: Dict[str, str] = {}
    for dist in DISTRIBUTIONS:
        data = tomllib.loads((PACKAGES_DIR / dist / "pyproject.toml").read_text(encoding="utf-8"))
        for requirement in _requirements(data):
            match = re.match(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*>=\s*([^,;\s]+)", requirement)
            if match and match.group(1) not in DISTRIBUTIONS:
                name = match.group(1).lower()
                assert floors.get(name, match.group(3)) == match.group(3), f"two floors for {name}"
                floors[name] = match.group(3)
    return floors


def test_the_floors_leg_installs_every_published_lower_bound() -> None:
    # hatch.toml's floors leg must test exactly the oldest versions that our
    # distributions let users install.
    tomllib = pytest.importorskip("tomllib", reason="tomllib is new in Python 3.11")
    hatch = tomllib.loads((REPO / "hatch.toml").read_text(encoding="utf-8"))
    pins = hatch["envs"]["hatch-test"]["overrides"]["matrix"]["deps"]["extra-dependencies"]
    leg = {}
    for entry in pins:
        assert entry["if"] == ["floors"], entry
        name, version = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)", entry["value"]).groups()
        leg[name.lower()] = version
    assert leg == _published_floors()
    assert set(leg) >= {"greenlet", "sniffio", "trio", "sqlalchemy"}


@pytest.mark.skipif(
    os.environ.get("GREENBACK_FLOORS") != "1",
    reason="checks the floors leg's environment: runs where hatch.toml sets GREENBACK_FLOORS=1",
)
def test_this_environment_has_the_floors() -> None:
    import importlib.metadata

    from packaging.version import Version

    # The leg's pins, as hatch.toml states them (Python 3.10 has no tomllib).
    text = (REPO / "hatch.toml").read_text(encoding="utf-8")
    pins = re.findall(r'\{ value = "([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^"]+)", if = \["floors"\] \}', text)
    expected = {name.lower(): version for name, version in pins}
    assert len(expected) >= 4, expected
    installed = {name: importlib.metadata.version(name) for name in expected}
    assert {name: Version(v) for name, v in installed.items()} == {name: Version(v) for name, v in expected.items()}


# ---------------------------------------------------------------------------
# Helpers and fixtures for the slow tests


def run(cmd: List[Any]) -> str:
    """Run a command and return its output; fail the test (with it) on error."""
    proc = subprocess.run(
        [str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if proc.returncode != 0:
        pytest.fail(
            f"exit code {proc.returncode}: {' '.join(str(c) for c in cmd)}\n{proc.stdout[-6000:]}",
            pytrace=False,
        )
    return proc.stdout


def uv() -> str:
    """The uv executable (a test dependency): it builds and installs several
    times faster than pip, with the same metadata and the same index."""
    from uv import find_uv_bin

    return find_uv_bin()


class Venv:
    """A fresh virtual environment of the Python running the tests, filled by uv."""

    def __init__(self, path: Path) -> None:
        run([uv(), "venv", "--quiet", "--python", sys.executable, path])
        if sys.platform == "win32":
            self.python = path / "Scripts" / "python.exe"
        else:
            self.python = path / "bin" / "python"

    def pip(self, command: str, *args: Any) -> str:
        """``uv pip <command> ...`` in this environment (install, check, ...)."""
        return run([uv(), "pip", command, "--python", self.python, *args])

    def python_c(self, code: str, *args: str) -> str:
        return run([self.python, "-c", code, *args])


@pytest.fixture(scope="module")
def version() -> str:
    return read_version()


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory, version: str) -> Dict[str, Path]:
    """Build every distribution's wheel from its directory: name -> wheel path."""
    out = tmp_path_factory.mktemp("wheelhouse")
    for dist in DISTRIBUTIONS:
        run([uv(), "build", "--quiet", "--wheel", "--out-dir", out, PACKAGES_DIR / dist])
    found = {}
    for dist in DISTRIBUTIONS:
        stem = dist.replace("-", "_")
        names = sorted(p.name for p in out.glob(f"{stem}-*.whl"))
        assert names == [f"{stem}-{version}-py3-none-any.whl"], f"{dist}: built {names}"
        found[dist] = out / names[0]
    return found


def install_metapackage(env: Venv, wheels: Dict[str, Path], extras: str = "") -> None:
    # Only the local wheelhouse has the exact development version that every
    # greenback requirement pins; third-party requirements come from the index.
    meta = wheels["greenback"]
    env.pip("install", "--find-links", meta.parent, f"{meta}{extras}")


@pytest.fixture(scope="module")
def trio_venv(tmp_path_factory: pytest.TempPathFactory, wheels: Dict[str, Path]) -> Venv:
    """``greenback[trio]`` installed from the wheels."""
    env = Venv(tmp_path_factory.mktemp("trio-env") / "venv")
    install_metapackage(env, wheels, "[trio]")
    return env


@pytest.fixture(scope="module")
def plain_venv(tmp_path_factory: pytest.TempPathFactory, wheels: Dict[str, Path]) -> Venv:
    """Venv #2: plain ``greenback``, no extras, installed from the wheels."""
    env = Venv(tmp_path_factory.mktemp("plain-env") / "venv")
    install_metapackage(env, wheels)
    return env


# Prints, as JSON, which modules and distributions are present and the
# greenback.loops entry points, without importing any of those modules.
PROBE = r"""
import importlib.metadata as md, importlib.util, json, sys
mods, dists = sys.argv[1].split(","), sys.argv[2].split(",")
def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None
eps = md.entry_points()
eps = eps.select(group="greenback.loops") if hasattr(eps, "select") else eps.get("greenback.loops", [])
print(json.dumps({
    "modules": {m: importlib.util.find_spec(m) is not None for m in mods},
    "versions": {d: version(d) for d in dists},
    "loops": sorted([e.name, e.value] for e in eps),
}))
"""
PROBE_MODULES = ["greenback", "greenback_asyncio", "greenback_trio", "greenback_sqlalchemy", "trio", "sqlalchemy"]
PROBE_DISTS = sorted(set(DISTRIBUTIONS) | {"sqlalchemy"})


ASYNCIO_PROGRAM = """
import asyncio, greenback

async def answer():
    await asyncio.sleep(0)
    return 42

async def main():
    await greenback.ensure_portal()
    return greenback.await_(answer())

print("asyncio:", asyncio.run(main()))
"""

TRIO_PROGRAM = """
import greenback, trio

async def answer():
    await trio.sleep(0)
    return 42

async def main():
    await greenback.ensure_portal()
    return greenback.await_(answer())

print("trio:", trio.run(main), greenback.AutoPortalInstrument)
"""


TOYLOOP = Path(__file__).parent / "toyloop"
TOYLOOP_PROGRAM = """
import greenback
from greenback_toyloop import ToyLoop, toy_yield

loop = ToyLoop()  # library "toyloop": greenback finds its integration by entry point

def sync_code(n):
    return [greenback.await_(toy_yield(i)) for i in range(n)]

async def child():
    await toy_yield()
    print("child:", greenback.has_portal(), repr(greenback.await_(toy_yield("child value"))))

async def main():
    before = greenback.has_portal()
    await greenback.ensure_portal()
    print("portal:", before, "->", greenback.has_portal())
    print("awaited:", await greenback.with_portal_run_sync(sync_code, 3))
    task = loop.spawn(child())
    greenback.bestow_portal(task)
    while not task.done:
        await toy_yield()
    if task.error is not None:
        raise task.error

loop.run(main)
"""


def probe(env: Venv) -> Dict[str, Any]:
    return json.loads(env.python_c(PROBE, ",".join(PROBE_MODULES), ",".join(PROBE_DISTS)))  # type: ignore[no-any-return]


def wheel_contents(wheel: Path) -> Tuple[Message, List[str], str]:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(metadata).decode("utf-8"))
        ep_files = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        entry_points = zf.read(ep_files[0]).decode("utf-8") if ep_files else ""
    return meta, names, entry_points


# ---------------------------------------------------------------------------
# Slow tests: the built wheels, and installs from them


@pytest.mark.packaging
@pytest.mark.timeout(900)
@pytest.mark.skipif(os.environ.get(ENABLE_VAR) != "1", reason=SLOW_REASON)
class TestBuiltDistributions:
    @pytest.mark.parametrize("dist", sorted(DISTRIBUTIONS))
    def test_wheel_contents_and_metadata(self, dist: str, wheels: Dict[str, Path], version: str) -> None:
        meta, names, entry_points = wheel_contents(wheels[dist])
        assert meta["Name"] == dist
        assert meta["Version"] == version
        assert meta["Requires-Python"] == ">=3.9"
        assert meta["License-Expression"] == "MIT"
        assert "Typing :: Typed" in (meta.get_all("Classifier") or [])
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)

        # Every requirement on a sibling distribution pins exactly this version.
        for req in meta.get_all("Requires-Dist") or []:
            spec = req.split(";")[0].strip()
            name = re.split(r"[\s\[=<>!~]", spec, maxsplit=1)[0]
            if name in DISTRIBUTIONS:
                assert spec == f"{name}=={version}", req

        package = DISTRIBUTIONS[dist]
        top_level = {n.split("/")[0] for n in names} - {n.split("/")[0] for n in names if ".dist-info/" in n}
        if package is None:
            # No code of its own: only the files greenback 1.x also installed,
            # which a pip upgrade from 1.x would otherwise leave deleted.
            code = sorted(n for n in names if ".dist-info/" not in n)
            assert code == ["greenback/__init__.py", "greenback/_version.py", "greenback/py.typed"], code
        else:
            assert top_level == {package}
            assert f"{package}/__init__.py" in names
            assert f"{package}/py.typed" in names

        declared = sorted(
            [part.strip() for part in line.split("=", 1)] for line in entry_points.splitlines() if "=" in line
        )
        assert declared == LOOP_ENTRY_POINTS.get(dist, [])

    def test_metapackage_requirements(self, wheels: Dict[str, Path], version: str) -> None:
        # A plain install brings both loop integrations; the extras bring the
        # libraries (Trio; greenback-sqlalchemy, which brings SQLAlchemy).
        meta, _, _ = wheel_contents(wheels["greenback"])
        assert sorted(meta.get_all("Provides-Extra") or []) == ["all", "sqlalchemy", "trio"]
        assert set(meta.get_all("Requires-Dist") or []) == {
            f"greenback-core=={version}",
            f"greenback-asyncio=={version}",
            f"greenback-trio=={version}",
            "trio>=0.23; extra == 'trio'",
            f"greenback-sqlalchemy=={version}; extra == 'sqlalchemy'",
            "trio>=0.23; extra == 'all'",
            f"greenback-sqlalchemy=={version}; extra == 'all'",
        }

    def test_loop_integrations_require_no_loop_library(self, wheels: Dict[str, Path], version: str) -> None:
        for dist in ("greenback-asyncio", "greenback-trio"):
            meta, _, _ = wheel_contents(wheels[dist])
            assert meta.get_all("Requires-Dist") == [f"greenback-core=={version}"], dist

    def test_install_with_trio_extra(self, trio_venv: Venv, version: str) -> None:
        state = probe(trio_venv)
        assert state["versions"] == {
            "greenback": version,
            "greenback-core": version,
            "greenback-asyncio": version,
            "greenback-trio": version,
            "greenback-sqlalchemy": None,
            "sqlalchemy": None,
        }
        assert state["modules"] == {
            "greenback": True,
            "greenback_asyncio": True,
            "greenback_trio": True,
            "greenback_sqlalchemy": False,
            "trio": True,
            "sqlalchemy": False,
        }
        assert state["loops"] == sorted(LOOP_ENTRY_POINTS["greenback-asyncio"] + LOOP_ENTRY_POINTS["greenback-trio"])

        out = trio_venv.python_c("import greenback, greenback_trio; print(greenback.__version__)")
        assert out.strip() == version
        trio_venv.pip("check")

    def test_import_greenback_loads_no_loop_or_integration(self, trio_venv: Venv) -> None:
        # Integrations (and their loops) load lazily, when the first portal is made
        # under that loop: never at `import greenback`.
        out = trio_venv.python_c(
            "import sys, greenback\n"
            "lazy = {'trio', 'sqlalchemy', 'uvloop', 'greenback_trio', 'greenback_asyncio', 'greenback_sqlalchemy'}\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in lazy))"
        )
        assert out.strip() == "[]", f"`import greenback` imported: {out.strip()}"

    def test_plain_install(self, plain_venv: Venv, version: str) -> None:
        # Both loop integrations, no loop library beyond asyncio: as with
        # greenback 1.x, Trio works as soon as it is installed (next test).
        state = probe(plain_venv)
        assert state["versions"] == {
            "greenback": version,
            "greenback-core": version,
            "greenback-asyncio": version,
            "greenback-trio": version,
            "greenback-sqlalchemy": None,
            "sqlalchemy": None,
        }
        assert state["modules"] == {
            "greenback": True,
            "greenback_asyncio": True,
            "greenback_trio": True,
            "greenback_sqlalchemy": False,
            "trio": False,
            "sqlalchemy": False,
        }
        assert state["loops"] == sorted(LOOP_ENTRY_POINTS["greenback-asyncio"] + LOOP_ENTRY_POINTS["greenback-trio"])
        out = plain_venv.python_c(ASYNCIO_PROGRAM)
        assert out.strip() == "asyncio: 42"
        plain_venv.pip("check")

        # Trio's own names say how to get Trio.
        out = plain_venv.python_c(
            "import greenback\n"
            "try:\n"
            "    greenback.AutoPortalInstrument\n"
            "except ImportError as exc:\n"
            "    print(exc)\n"
        )
        assert 'pip install "greenback[trio]"' in out, out

    def test_plain_install_then_trio_works(self, tmp_path: Path, wheels: Dict[str, Path]) -> None:
        env = Venv(tmp_path / "venv")  # not plain_venv: the test above needs it without Trio
        install_metapackage(env, wheels)
        env.pip("install", "trio")
        out = env.python_c(TRIO_PROGRAM)
        assert out.strip() == "trio: 42 <class 'greenback_trio._tree.AutoPortalInstrument'>"

    def test_a_third_party_loop_integration_found_by_its_entry_point(self, tmp_path: Path, wheels: Dict[str, Path]) -> None:
        # tests/packaging/toyloop: a loop and its integration, built on the
        # public API alone, installed next to greenback-core and nothing else
        # of greenback's (no asyncio, no Trio integration).
        run([uv(), "build", "--quiet", "--wheel", "--out-dir", tmp_path, TOYLOOP])
        env = Venv(tmp_path / "venv")
        env.pip("install", "--find-links", wheels["greenback-core"].parent, wheels["greenback-core"], *tmp_path.glob("*.whl"))
        state = probe(env)
        assert state["modules"]["greenback_asyncio"] is False and state["modules"]["greenback_trio"] is False
        assert state["loops"] == [["toyloop", "greenback_toyloop:integration"]]
        out = env.python_c(TOYLOOP_PROGRAM)
        assert out.splitlines() == ["portal: False -> True", "awaited: [0, 1, 2]", "child: True 'child value'"]

    def test_pip_upgrade_from_greenback_1_3_0(self, tmp_path: Path, wheels: Dict[str, Path], version: str) -> None:
        # What a user of greenback 1.3.0 runs: `pip install --upgrade greenback`.
        # pip deletes 1.3.0's files after installing greenback-core (see
        # test_the_metapackage_carries_the_core_files_greenback_1x_also_installed).
        env = tmp_path / "venv"
        run([uv(), "venv", "--quiet", "--seed", "--python", sys.executable, env])
        python = env / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
        pip = [python, "-m", "pip", "--disable-pip-version-check", "--quiet"]
        run([*pip, "install", "greenback==1.3.0"])
        run([*pip, "install", "--upgrade", "--pre", "--find-links", wheels["greenback"].parent, "greenback"])
        out = run([python, "-c", ASYNCIO_PROGRAM + "import greenback.lowlevel; print(greenback.__version__)"])
        assert out.split() == ["asyncio:", "42", version]
        run([*pip, "check"])
