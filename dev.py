#!/usr/bin/env python3
"""Developer entry point for the greenback monorepo.

Needs only CPython (3.10+ to host Hatch) with pip. The first run creates
``.tools/venv`` with a pinned Hatch; every command then runs Hatch
environments defined in ``hatch.toml``, which live in ``.tools/hatch``
(unless HATCH_DATA_DIR is set). Delete ``.tools`` to start afresh.

    python3 dev.py test [PYTEST ARGS]   all tests, every Python 3.9-3.13 present
    python3 dev.py demo [ARGS]          python examples/demo.py
    python3 dev.py types                mypy --strict and pyright on packages/*/src
    python3 dev.py bench [ARGS]         python benchmarks/compare.py
    python3 dev.py hatch [ARGS]         the pinned Hatch itself

``test`` runs each ``test.*`` environment of the matrix whose Python is
installed (Pythons that are missing are reported as skipped, never
downloaded), continues after failures, and ends with a summary. It fails
if any environment fails, if pytest finds no tests (exit code 5), or if no
environment could run at all. When pyenv is present, its installed 3.9-3.13
versions are all put on PATH through PYENV_VERSION.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, NoReturn, Optional, Tuple

HATCH_REQUIREMENT = "hatch==1.18.2"
ROOT = Path(__file__).resolve().parent
TOOLS = ROOT / ".tools"
VENV = TOOLS / "venv"
# Set for one environment per test run: enables the slow packaging tests.
PACKAGING_VAR = "GREENBACK_PACKAGING"

IS_WINDOWS = sys.platform == "win32"


def say(message: str) -> None:
    print(f"[dev] {message}", flush=True)


def die(message: str, code: int = 2) -> NoReturn:
    print(f"[dev] error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


# --------------------------------------------------------------------------
# Pythons


def python_version_of(executable: str) -> Optional[Tuple[int, int]]:
    """(major, minor) of an interpreter, or None if it does not run."""
    try:
        out = subprocess.run(
            [executable, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    major, minor = out.stdout.strip().split(".")
    return int(major), int(minor)


def find_python(version: str) -> Optional[str]:
    """A working ``python3.X`` on PATH for version "3.X", or None.

    pyenv installs shims for every version it has; a shim whose version is
    not selected fails when run, so each candidate is actually executed.
    """
    want = tuple(int(p) for p in version.split("."))
    names = [f"python{version}"] + (["py"] if IS_WINDOWS else [])
    for name in names:
        exe = shutil.which(name)
        if exe and python_version_of(exe) == want:
            return exe
    return None


def setup_pyenv() -> None:
    """Put pyenv's newest 3.X.Y of every minor version 3.9+ on PATH."""
    if not (shutil.which("pyenv") or os.environ.get("PYENV_ROOT")):
        return
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    versions_dir = root / "versions"
    if not versions_dir.is_dir():
        return
    installed = [p.name for p in versions_dir.iterdir() if re.fullmatch(r"\d+\.\d+\.\d+", p.name)]
    newest: Dict[Tuple[int, int], Tuple[int, int, int]] = {}
    for name in installed:
        major, minor, patch = (int(x) for x in name.split("."))
        if (major, minor) >= (3, 9):
            newest[(major, minor)] = max(newest.get((major, minor), (0, 0, 0)), (major, minor, patch))
    chosen = [".".join(map(str, newest[key])) for key in sorted(newest)]
    if not chosen:
        return
    current = [v for v in os.environ.get("PYENV_VERSION", "").split(":") if v]
    if not current:
        try:
            out = subprocess.run(
                ["pyenv", "version-name"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
            )
            current = [v for v in out.stdout.strip().split(":") if v]
        except OSError:
            current = []
    # Keep the active version first, so plain `python3` does not change.
    merged = current + [v for v in chosen if v not in current]
    os.environ["PYENV_VERSION"] = ":".join(merged)


# --------------------------------------------------------------------------
# Hatch bootstrap


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if IS_WINDOWS else "bin/python")


def host_python() -> str:
    """A Python >= 3.10 to host Hatch: this one if it qualifies."""
    if sys.version_info >= (3, 10):
        return sys.executable
    for minor in ("3.13", "3.12", "3.11", "3.10"):
        exe = find_python(minor)
        if exe:
            return exe
    die("Hatch needs Python 3.10 or newer to run; none was found on PATH")


def ensure_hatch() -> List[str]:
    stamp = VENV / "hatch-requirement.txt"
    if venv_python().exists() and stamp.exists() and stamp.read_text().strip() == HATCH_REQUIREMENT:
        if python_version_of(str(venv_python())) is not None:
            return [str(venv_python()), "-m", "hatch"]
    say(f"bootstrapping {HATCH_REQUIREMENT} into {VENV.relative_to(ROOT)}")
    if VENV.exists():
        shutil.rmtree(VENV)
    TOOLS.mkdir(exist_ok=True)
    subprocess.run([host_python(), "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(venv_python()), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", HATCH_REQUIREMENT],
        check=True,
    )
    stamp.write_text(HATCH_REQUIREMENT + "\n")
    return [str(venv_python()), "-m", "hatch"]


def hatch(hatch_cmd: List[str], *args: str, env: Optional[Dict[str, str]] = None) -> int:
    return subprocess.run([*hatch_cmd, *args], cwd=ROOT, env=env).returncode


# --------------------------------------------------------------------------
# test

SUMMARY_LINE = re.compile(r"^=+ (?P<body>.*\b(passed|failed|skipped|error|errors|deselected|no tests ran)\b.*) in [\d.]+s")
COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)")


def run_streaming(cmd: List[str], env: Dict[str, str]) -> Tuple[int, Optional[str]]:
    """Run a command, echoing its output; return (exit code, pytest summary)."""
    summary = None
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        plain = re.sub(r"\x1b\[[0-9;]*m", "", line).strip()
        match = SUMMARY_LINE.match(plain)
        if match:
            summary = match.group("body")
    return proc.wait(), summary


def matrix_environments(hatch_cmd: List[str]) -> List[Tuple[str, str]]:
    """(environment name, python version) of every test.* environment."""
    out = subprocess.run([*hatch_cmd, "env", "show", "--json"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if out.returncode != 0:
        die("`hatch env show --json` failed")
    envs = json.loads(out.stdout)
    found = [(name, str(cfg.get("python", ""))) for name, cfg in envs.items() if name.startswith("test.")]
    if not found:
        die("hatch.toml defines no test.* matrix environments")
    return found


def cmd_test(pytest_args: List[str]) -> int:
    started = time.monotonic()
    hatch_cmd = ensure_hatch()
    envs = matrix_environments(hatch_cmd)

    runnable, missing = [], []
    for name, py in envs:
        (runnable if find_python(py) else missing).append((name, py))
    if not runnable:
        die(f"none of the matrix Pythons ({', '.join(sorted({py for _, py in envs}))}) is installed", 1)

    # The slow packaging tests run once: in the plain environment of the
    # newest Python present.
    def version_key(item: Tuple[str, str]) -> Tuple[int, ...]:
        return tuple(int(p) for p in item[1].split("."))

    plain = [item for item in runnable if item[0] == f"test.py{item[1]}"] or runnable
    packaging_env = max(plain, key=version_key)[0]

    say("test environments: " + ", ".join(name for name, _ in runnable))
    for name, py in missing:
        say(f"skipping {name}: python{py} is not installed")

    results = []  # (env, status, seconds, pytest summary)
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    for name, _py in runnable:
        env = dict(os.environ)
        env.pop(PACKAGING_VAR, None)
        if name == packaging_env:
            env[PACKAGING_VAR] = "1"
        if sys.stdout.isatty():
            env.setdefault("PY_COLORS", "1")
        print(f"\n{'=' * 30} {name} {'=' * 30}", flush=True)
        t0 = time.monotonic()
        code, summary = run_streaming([*hatch_cmd, "run", f"{name}:run", *pytest_args], env)
        elapsed = time.monotonic() - t0
        if code == 0:
            status = "passed"
        elif code == 5:
            status = "FAILED (pytest collected no tests, exit code 5)"
        elif summary is None:
            status = f"FAILED (exit code {code}; environment setup or pytest start-up failed)"
        else:
            status = f"FAILED (exit code {code})"
        counts = dict.fromkeys(("passed", "failed", "skipped"), 0)
        for number, kind in COUNT.findall(summary or ""):
            key = {"errors": "failed", "error": "failed", "xpassed": "passed", "xfailed": "skipped"}.get(kind, kind)
            if key in counts:
                counts[key] += int(number)
        if code != 0 and counts["failed"] == 0:
            counts["failed"] = 1  # the environment itself failed
        for key, value in counts.items():
            totals[key] += value
        results.append((name, status, elapsed, summary or "-"))

    print(f"\n{'=' * 30} summary {'=' * 30}")
    width = max(len(name) for name, _ in envs)
    for name, status, elapsed, summary in results:
        print(f"  {name:<{width}}  {status:<10} {elapsed:6.0f}s  {summary}")
    for name, py in missing:
        print(f"  {name:<{width}}  skipped: python{py} not installed")
    failed_envs = [name for name, status, _, _ in results if status != "passed"]
    total = time.monotonic() - started
    print(f"  packaging tests ran in: {packaging_env}")
    print(f"  {len(results) - len(failed_envs)} of {len(results)} environments passed in {total:.0f}s")
    if totals["passed"] == 0 and not failed_envs:
        failed_envs.append("(no test passed anywhere)")
        totals["failed"] += 1
    # The closing line: the test counts over all environments.
    print(f"tests: {totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
    return 1 if failed_envs else 0


# --------------------------------------------------------------------------


def main(argv: List[str]) -> int:
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(__doc__)
        return 0 if argv else 2
    command, args = argv[0], argv[1:]
    # Keep Hatch's environments inside the checkout: `rm -rf .tools` starts
    # afresh, and a deleted clone (as in CI) leaves nothing behind.
    os.environ.setdefault("HATCH_DATA_DIR", str(TOOLS / "hatch"))
    setup_pyenv()
    if command == "test":
        return cmd_test(args)
    hatch_cmd = ensure_hatch()
    if command == "demo":
        return hatch(hatch_cmd, "run", "demo:run", *args)
    if command == "types":
        if args:
            die("`types` takes no arguments; use e.g. `python3 dev.py hatch run types:check-mypy PATHS`")
        return hatch(hatch_cmd, "run", "types:check")
    if command == "bench":
        return hatch(hatch_cmd, "run", "bench:compare", *args)
    if command == "hatch":
        return hatch(hatch_cmd, *args)
    die(f"unknown command {command!r}; try: python3 dev.py --help")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
