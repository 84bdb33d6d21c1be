#!/usr/bin/env python3
"""Compare the workspace greenback ("ours") with greenback 1.3.0 ("theirs").

Every figure is measured in a fresh subprocess (see ``_worker.py``); ours and
theirs take turns, row by row, within each round.  The cold-start rows time
whole processes instead (``_coldstart.py``), and the ``alt.*`` rows measure,
with ours' interpreter only, what users would do without greenback.  Run with
``--help`` for the options and see ``README.md`` next to this file for what
each row measures.
"""

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
WORKER = BENCH_DIR / "_worker.py"
COLD_START = BENCH_DIR / "_coldstart.py"
RESULT_MARK = "@@greenback-bench-result@@"

THEIRS_VERSION = "1.3.0"
# Distributions whose versions "theirs" copies from "ours" (when ours has them).
PINNED_DISTS = ("trio", "greenlet", "sniffio", "outcome")

# (key, label) in display order.  ``--rows 6`` selects every key in group 6,
# ``--rows alt`` every alternative.
ROWS = [
    ("1", "bare checkpoint (no portal)"),
    ("2", "checkpoint in portal"),
    ("3", "await_(checkpoint) from sync"),
    ("4", "with_portal_run_sync(noop)"),
    ("5", "with_portal_run(async_noop)"),
    ("6.sync", "with_portal_run_sync(fn->await_)"),
    ("6.async", "with_portal_run(afn->sync->await_)"),
    ("7.bare", "spawn task (reference)"),
    ("7.portal", "spawn task + ensure_portal"),
    ("8.2", "deep: checkpoint in portal"),
    ("8.3", "deep: await_(checkpoint) from sync"),
    ("8.4", "deep: with_portal_run_sync(noop)"),
    ("9.bare", "memory: parked in event.wait (ref)"),
    ("9.portal", "memory: parked in await_(event.wait)"),
    ("cold.wall", "cold start: import, first portal (wall)"),
    ("cold.rss", "cold start: import, first portal (peak RSS)"),
    ("alt.asyncio_to_thread", "asyncio.to_thread, run_coroutine_threadsafe"),
    ("alt.anyio_to_thread", "anyio to_thread.run_sync, from_thread.run"),
    ("alt.trio_to_thread", "trio.to_thread.run_sync, from_thread.run"),
    ("sqlalchemy.portal", "sync Session.execute through a portal"),
    ("alt.sqlalchemy_execute", "SQLAlchemy AsyncSession.execute"),
]
ROW_LABELS = dict(ROWS)
MEMORY_ROWS = ("9.bare", "9.portal")
LOOPS = ("trio", "asyncio")
IMPLS = ("ours", "theirs")

# Both cold-start rows come from the same processes: whole runs of
# _coldstart.py, timed from outside (wall time, and the peak RSS that
# os.wait4 reports). One such process is one sample.
COLD_ROWS = ("cold.wall", "cold.rss")
COLD_UNITS = {"cold.wall": "ms", "cold.rss": "MiB"}

# Rows measured on ours' interpreter only: the alternatives do without
# greenback altogether, and greenback 1.3.0 cannot run a sync SQLAlchemy
# Session over an async engine. Their "theirs" cells read n/a.
OURS_ONLY_ROWS = ("alt.asyncio_to_thread", "alt.anyio_to_thread",
                  "alt.trio_to_thread", "sqlalchemy.portal",
                  "alt.sqlalchemy_execute")
# Rows that exist under one loop only (aiosqlite is an asyncio driver).
ROW_LOOPS = {
    "alt.asyncio_to_thread": ("asyncio",),
    "alt.trio_to_thread": ("trio",),
    "sqlalchemy.portal": ("asyncio",),
    "alt.sqlalchemy_execute": ("asyncio",),
}


def row_loops(key, loops):
    """The loops of *loops* that row *key* is measured under."""
    return [loop for loop in loops if loop in ROW_LOOPS.get(key, LOOPS)]


def row_impls(key, impls):
    return [i for i in impls if i == "ours" or key not in OURS_ONLY_ROWS]


def default_unit(key):
    if key in COLD_UNITS:
        return COLD_UNITS[key]
    return "KiB/task" if key in MEMORY_ROWS else "us/op"


# --------------------------------------------------------------------------
# Subprocess plumbing.


def theirs_env():
    """Environment for theirs: nothing that could leak our sources in."""
    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE"):
        env.pop(var, None)
    return env


def impl_command(impl, python):
    # Theirs runs isolated from the environment (-E) and user site (-s), so
    # only the virtualenv's packages are visible.  Ours inherits the caller's
    # environment: PYTHONPATH is a legitimate way to point at our sources.
    if impl == "theirs":
        return [python, "-E", "-s"], theirs_env()
    return [python], None


class Finished:
    """A child process that ran to its end: exit code, output, and what it cost."""

    def __init__(self, returncode, stdout, stderr, wall_s, peak_rss_kib):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.wall_s = wall_s
        self.peak_rss_kib = peak_rss_kib

    def failure(self):
        """Why the process failed, in a line, from its exit and last stderr line."""
        tail = (self.stderr.strip().splitlines() or ["no output"])[-1]
        if self.returncode < 0:
            what = "killed by signal {}".format(-self.returncode)
        else:
            what = "exit status {}".format(self.returncode)
        return "{}: {}".format(what, tail[:200])


def run_process(cmd, env, timeout):
    """Run *cmd* to its end; return a Finished.

    Raises subprocess.TimeoutExpired (the process was killed) or OSError,
    as subprocess.run does. The output goes to temporary files rather than
    pipes, so that the parent can sit in os.wait4 (which reaps the child
    and hands back its resource usage, peak RSS included) without a full
    pipe ever blocking the child. The wall time runs from just before the
    process is started to the moment it has been reaped.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        timed_out = []

        def kill():
            timed_out.append(True)
            proc.kill()

        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            if hasattr(os, "wait4"):
                _, status, usage = os.wait4(proc.pid, 0)
                wall = time.perf_counter() - started
                proc.returncode = os.waitstatus_to_exitcode(status)
                # KiB on Linux and the BSDs, bytes on macOS.
                peak = usage.ru_maxrss / (1024 if sys.platform == "darwin" else 1)
            else:  # Windows: no resource usage of a child
                proc.wait()
                wall = time.perf_counter() - started
                peak = None
        finally:
            timer.cancel()
        if timed_out:
            raise subprocess.TimeoutExpired(cmd, timeout)
        out.seek(0)
        err.seek(0)
        return Finished(
            proc.returncode,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
            wall,
            peak,
        )


def run_worker(impl, python, worker_args, timeout):
    """Run the worker; return its JSON result, or {"ok": False, "error": ...}."""
    prefix, env = impl_command(impl, python)
    cmd = prefix + [str(WORKER)] + worker_args
    try:
        proc = run_process(cmd, env, timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": "timeout after {:g}s".format(timeout)}
    except OSError as exc:
        return {"ok": False, "error": "cannot run {}: {}".format(python, exc)}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            try:
                return json.loads(line[len(RESULT_MARK):])
            except ValueError:
                break
    # No result line: the process died (e.g. a crash inside greenlet).
    return {"ok": False, "error": proc.failure()}


def run_cold_start(impl, python, loop, timeout):
    """One whole _coldstart.py process: {"ok": True, "wall_ms", "rss_mib"}.

    It runs with bytecode writing on, whatever PYTHONDONTWRITEBYTECODE says
    (theirs ignores it anyway, under -E): the first, untimed, run of each
    side writes the caches, so that the timed runs compare import costs,
    not compile costs.
    """
    prefix, env = impl_command(impl, python)
    env = dict(os.environ if env is None else env)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    cmd = prefix + [str(COLD_START), loop]
    try:
        proc = run_process(cmd, env, timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": "timeout after {:g}s".format(timeout)}
    except OSError as exc:
        return {"ok": False, "error": "cannot run {}: {}".format(python, exc)}
    if proc.returncode != 0:
        return {"ok": False, "error": proc.failure()}
    rss = None if proc.peak_rss_kib is None else proc.peak_rss_kib / 1024.0
    return {"ok": True, "wall_ms": proc.wall_s * 1000.0, "rss_mib": rss}


def query_info(impl, python, timeout=60):
    result = run_worker(impl, python, ["--info"], timeout)
    if result.get("ok"):
        return result["info"]
    return {"error": result.get("error", "unknown error")}


# --------------------------------------------------------------------------
# The reference virtualenv.


def venv_python(venv_dir):
    if os.name == "nt":
        return venv_dir / "Scripts" / "python.exe"
    return venv_dir / "bin" / "python"


def run_quietly(cmd, what):
    """Run *cmd*; on failure raise RuntimeError naming *what* and its last line."""
    proc = subprocess.run(
        [str(c) for c in cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        universal_newlines=True,
    )
    if proc.returncode != 0:
        last = (proc.stdout.strip().splitlines() or ["?"])[-1]
        raise RuntimeError("{} failed: {}".format(what, last))


def create_venv(base_python, venv_dir, python):
    """``base_python -m venv venv_dir``, with pip in it.

    Some interpreters come without ensurepip, which venv uses to put pip in:
    Debian splits it off into python3.X-venv (the CPython 3.14/3.15 of
    scripts/fetch-pythons are Debian's). There the venv is made without pip,
    and base_python's own pip (in the environment that runs "ours"; pip
    22.3+ can install into another interpreter) installs pip into it.
    """
    has_ensurepip = subprocess.run(
        [base_python, "-c", "import ensurepip"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ).returncode == 0
    if has_ensurepip:
        run_quietly([base_python, "-m", "venv", venv_dir], "python -m venv")
        return
    run_quietly([base_python, "-m", "venv", "--without-pip", venv_dir], "python -m venv --without-pip")
    run_quietly(
        [base_python, "-m", "pip", "--disable-pip-version-check", "--python", python,
         "install", "--quiet", "pip"],
        "installing pip into the venv (this Python has no ensurepip) with {} -m pip".format(base_python),
    )


def theirs_venv_plan(ours_info):
    """(directory name, pins) of the venv for theirs, given ours' --info.

    The name tells CPython and PyPy of the same version apart (they would
    otherwise take turns recreating one venv). PyPy's greenlet is part of
    the interpreter, so both sides already run the same one: no pin.
    """
    py_version = ours_info.get("python") or platform.python_version()
    short = ".".join(py_version.split(".")[:2])
    pypy = ours_info.get("python_implementation") == "PyPy"
    name = ".venv-greenback-{}-{}{}".format(THEIRS_VERSION, "pypy" if pypy else "py", short)
    versions = ours_info.get("versions") or {}
    pins = ["greenback=={}".format(THEIRS_VERSION)]
    for dist in PINNED_DISTS:
        if dist == "greenlet" and pypy:
            continue
        if versions.get(dist):
            pins.append("{}=={}".format(dist, versions[dist]))
    if not versions.get("trio"):
        pins.append("trio")  # ours lacks trio: take the newest
    return name, pins


def ensure_theirs_venv(ours_info, base_python, log):
    """Create (or reuse) benchmarks/.venv-greenback-1.3.0-pyX.Y (pypyX.Y on
    PyPy) with greenback 1.3.0 and the same trio/greenlet/... versions as ours.

    Returns the venv's python.  Raises RuntimeError with a short message if
    it can't be set up (typically: no network).
    """
    py_version = ours_info.get("python") or platform.python_version()
    name, pins = theirs_venv_plan(ours_info)
    venv_dir = BENCH_DIR / name
    python = venv_python(venv_dir)
    spec = {"python": py_version, "pins": pins}
    marker = venv_dir / "bench-spec.json"

    try:
        if json.loads(marker.read_text()) == spec and python.exists():
            return str(python)
    except (OSError, ValueError):
        pass

    if python.exists():
        got = query_info("theirs", str(python)).get("python")
        if got != py_version:
            log("recreating {} (its Python is {}, need {})".format(
                venv_dir.name, got, py_version))
            import shutil

            shutil.rmtree(str(venv_dir))
    if not python.exists():
        log("creating {} with {} (one-time set-up)".format(venv_dir, base_python))
        create_venv(base_python, venv_dir, python)
    log("installing into {}: {}".format(venv_dir.name, " ".join(pins)))
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check",
         "--quiet"] + pins,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        universal_newlines=True,
        env=theirs_env(),
    )
    if proc.returncode != 0:
        lines = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
        raise RuntimeError("pip install failed: " + (lines[-1] if lines else "?"))
    marker.write_text(json.dumps(spec, indent=2) + "\n")
    return str(python)


# --------------------------------------------------------------------------
# Statistics and output.


def median(values):
    return statistics.median(values) if values else None


def summarize(cell):
    """The figure, the fastest sample of all rounds; and the spread: half
    the interquartile range of all samples, relative to their median.

    A sample times tens of thousands of operations over ~100 ms, so the
    fastest one is still an average, as timeit's "best of" is. Shared
    machines (this project's CI class included) go through spells, from a
    fraction of a second to minutes, of running up to 1.7x slower. A spell
    only ever slows a sample down, so the fastest sample is the one closest
    to what the code costs, for each side alike; a median moves whenever a
    spell caught one side's samples more often than the other's. The spread
    shows how noisy the run was.
    """
    samples = sorted(v for rnd in cell["rounds"] for v in rnd)
    if not samples:
        return None, None
    spread = None
    pooled = median(samples)
    if len(samples) >= 4 and pooled:
        q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive")
        spread = (q3 - q1) / 2 / pooled
    return samples[0], spread


def fmt_value(value, spread, unit):
    if value is None:
        return "-"
    digits = 2 if unit in ("KiB/task", "MiB") or value >= 10 else 3
    text = "{:.{}f}".format(value, digits)
    if spread is not None:
        text += " ±{:.0f}%".format(spread * 100)
    return text


def cell_text(cell):
    if cell is None:
        return "-"
    if cell["errors"] and not any(cell["rounds"]):
        msg = cell["errors"][0]
        msg = msg if len(msg) <= 60 else msg[:57] + "..."
        return "error: " + msg
    med, spread = summarize(cell)
    text = fmt_value(med, spread, cell.get("unit"))
    if cell["errors"]:
        text += " ({} err)".format(len(cell["errors"]))
    return text


def load_average():
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            return subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                stdout=subprocess.PIPE, universal_newlines=True,
            ).stdout.strip()
        except OSError:
            pass
    return platform.processor() or platform.machine() or "unknown"


def describe_impl(name, info):
    if "error" in info:
        return "{:7s} error: {}".format(name, info["error"])
    v = info.get("versions", {})
    gb = info.get("greenback_version") or v.get("greenback")
    where = info.get("greenback_file")
    if "greenback_error" in info:
        gb_text = "import failed ({})".format(info["greenback_error"])
    else:
        gb_text = "{} ({})".format(gb or "version unknown", where or "?")
    return (
        "{:7s} Python {} {}  greenlet {}  trio {}  sniffio {}\n"
        "        greenback {}\n        interpreter {}".format(
            name,
            info.get("python"),
            info.get("python_implementation", ""),
            v.get("greenlet"),
            v.get("trio"),
            v.get("sniffio"),
            gb_text,
            info.get("executable"),
        )
    )


def print_table(results, rows, loops, impls, out):
    header = ["row", "loop", "unit"] + list(impls)
    if len(impls) == 2:
        header.append("ours/theirs")
    table = [header]
    # Geometric means over the per-operation rows only: a cold-start ratio
    # is a different quantity, and the alternatives have no ratio.
    ratios = {"time": [], "memory": []}
    key_width = max([8] + [len(key) for key in rows])
    for key in rows:
        for loop in row_loops(key, loops):
            cells = [results[key][loop].get(i) for i in impls]
            unit = next((c["unit"] for c in cells if c and c.get("unit")), "")
            line = ["{:{}s} {}".format(key, key_width, ROW_LABELS[key]), loop,
                    unit or default_unit(key)]
            line += ["n/a" if i not in row_impls(key, impls) else cell_text(c)
                     for i, c in zip(impls, cells)]
            if len(impls) == 2:
                a = summarize(cells[0])[0] if cells[0] else None
                b = summarize(cells[1])[0] if cells[1] else None
                if a is not None and b:
                    ratio = a / b
                    line.append("{:.2f}".format(ratio))
                    results[key][loop]["ratio"] = ratio
                    kind = "memory" if key in MEMORY_ROWS else "time"
                    if ratio > 0 and key not in COLD_ROWS:
                        ratios[kind].append(ratio)
                else:
                    line.append("n/a" if key in OURS_ONLY_ROWS else "-")
            table.append(line)
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for n, line in enumerate(table):
        cols = []
        for i, text in enumerate(line):
            cols.append(text.ljust(widths[i]) if i < 3 else text.rjust(widths[i]))
        out("  ".join(cols).rstrip())
        if n == 0:
            out("  ".join("-" * w for w in widths))
    summary = {}
    for kind, values in ratios.items():
        if values:
            geo = math.exp(sum(math.log(v) for v in values) / len(values))
            summary[kind] = geo
            out("geometric mean of ours/theirs over {} {} cells: {:.2f}".format(
                len(values), kind, geo))
    if len(impls) == 2 and any(key in OURS_ONLY_ROWS for key in rows):
        out("n/a: measured for ours' interpreter only (the alternatives do "
            "without greenback; 1.3.0 cannot run a sync SQLAlchemy Session)")
    return summary


# --------------------------------------------------------------------------
# The cold-start rows.


def new_cell():
    return {"rounds": [], "errors": [], "unit": None, "n": []}


def measure_cold_round(cells, loop, pythons, setup_error, args, rnd, report):
    """One round of the cold-start rows under *loop*.

    *cells* maps each selected cold row to its {impl: cell}. The round runs
    ``args.samples`` whole processes per side, the sides taking turns and
    the side that goes first alternating too (ours, theirs; theirs, ours;
    ...), so that neither side always runs right after the other. Before
    the first round, each side runs once untimed: that run writes the
    bytecode caches of everything the process imports, and brings those
    files into the OS's cache, for both sides alike.
    """
    impls = list(next(iter(cells.values())))
    runnable = [impl for impl in impls if impl not in setup_error]
    if rnd == 0:
        for impl in runnable:
            run_cold_start(impl, pythons[impl], loop, args.timeout)
    figures = {impl: {"cold.wall": [], "cold.rss": []} for impl in impls}
    for sample in range(args.samples):
        order = impls if (rnd * args.samples + sample) % 2 == 0 else impls[::-1]
        for impl in order:
            if impl in setup_error:
                res = {"ok": False, "error": setup_error[impl]}
            else:
                res = run_cold_start(impl, pythons[impl], loop, args.timeout)
            if res.get("ok"):
                figures[impl]["cold.wall"].append(res["wall_ms"])
                if res["rss_mib"] is not None:
                    figures[impl]["cold.rss"].append(res["rss_mib"])
                shown = "{:.1f} ms, {} MiB".format(
                    res["wall_ms"],
                    "?" if res["rss_mib"] is None else "{:.2f}".format(res["rss_mib"]))
            else:
                for key in cells:
                    cells[key][impl]["errors"].append(res["error"])
                shown = "error: " + res["error"]
            report(impl, shown)
    for key, by_impl in cells.items():
        for impl, cell in by_impl.items():
            values = figures[impl][key]
            if values:
                cell["rounds"].append(values)
                cell["unit"] = COLD_UNITS[key]
                cell["n"].append(len(values))


# --------------------------------------------------------------------------
# Main.


def select_rows(spec):
    if not spec:
        return [key for key, _ in ROWS]
    wanted = [t.strip() for t in spec.split(",") if t.strip()]
    chosen = []
    for token in wanted:
        matches = [k for k, _ in ROWS if k == token or k.split(".")[0] == token]
        if not matches:
            raise SystemExit("unknown row {!r}; see --list-rows".format(token))
        chosen.extend(m for m in matches if m not in chosen)
    order = [k for k, _ in ROWS]
    return sorted(chosen, key=order.index)


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Benchmark the workspace greenback against greenback "
        "{} from PyPI.".format(THEIRS_VERSION),
    )
    p.add_argument("--only", choices=IMPLS,
                   help="measure one implementation only (--only ours needs "
                   "no network and no venv)")
    p.add_argument("--rows", metavar="LIST",
                   help="comma-separated rows or row groups, e.g. 1,3,8.2,9,cold,alt "
                   "(default: all; see --list-rows)")
    p.add_argument("--loops", default=",".join(LOOPS), metavar="LIST",
                   help="comma-separated event loops (default: trio,asyncio)")
    p.add_argument("--rounds", type=int,
                   help="rounds (fresh processes) per cell (default 5, "
                   "--quick 2)")
    p.add_argument("--samples", type=int,
                   help="timed samples per process (default 3, --quick 2); "
                   "for the cold rows, processes per round and side")
    p.add_argument("--target-ms", type=float,
                   help="duration of one timed sample in ms (default 100, "
                   "--quick 30)")
    p.add_argument("--quick", action="store_true",
                   help="fewer and shorter samples: a smoke run, not figures "
                   "to quote")
    p.add_argument("--depth", type=int, default=50,
                   help="extra frames above and below the portal in rows 8.x "
                   "(default 50)")
    p.add_argument("--mem-tasks", type=int, default=10000,
                   help="tasks parked at once in rows 9.x (default 10000)")
    p.add_argument("--ours-python", default=sys.executable, metavar="PATH",
                   help="interpreter that runs 'ours' (default: this one)")
    p.add_argument("--theirs-python", metavar="PATH",
                   help="interpreter that runs 'theirs' instead of the "
                   "managed venv (it must have greenback installed)")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="seconds before a measurement subprocess is abandoned")
    p.add_argument("--json", metavar="FILE", help="also save results as JSON")
    p.add_argument("--list-rows", action="store_true",
                   help="list the rows and exit")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print every measurement as it completes")
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 2 if args.quick else 5
    if args.samples is None:
        args.samples = 2 if args.quick else 3
    if args.target_ms is None:
        args.target_ms = 30.0 if args.quick else 100.0
    if args.rounds < 1 or args.samples < 1 or args.target_ms <= 0:
        p.error("--rounds, --samples and --target-ms must be positive")
    args.loop_list = [x.strip() for x in args.loops.split(",") if x.strip()]
    for loop in args.loop_list:
        if loop not in LOOPS:
            p.error("unknown loop {!r} (choose from {})".format(
                loop, ", ".join(LOOPS)))
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.list_rows:
        width = max(len(key) for key, _ in ROWS)
        for key, label in ROWS:
            print("{:{}s}  {}".format(key, width, label))
        return 0
    rows = select_rows(args.rows)
    impls = [args.only] if args.only else list(IMPLS)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    skipped = [key for key in rows
               if not row_loops(key, args.loop_list) or not row_impls(key, impls)]
    for key in skipped:
        log("skipping row {}: it is measured {}".format(
            key, "for ours only" if not row_impls(key, impls) else
            "under {} only".format(", ".join(ROW_LOOPS[key]))))
    rows = [key for key in rows if key not in skipped]
    if not rows:
        log("nothing to measure")
        return 2
    # Rows of ours alone (--rows alt) need no greenback 1.3.0, so no network.
    impls = [i for i in impls if any(i in row_impls(key, impls) for key in rows)]

    started = time.perf_counter()
    pythons = {"ours": args.ours_python}
    infos = {"ours": query_info("ours", args.ours_python)}
    setup_error = {}
    if "theirs" in impls:
        if args.theirs_python:
            pythons["theirs"] = args.theirs_python
        else:
            base = args.ours_python if "python" in infos["ours"] else sys.executable
            ours_for_pins = infos["ours"] if "python" in infos["ours"] else \
                query_info("ours", sys.executable)
            try:
                pythons["theirs"] = ensure_theirs_venv(ours_for_pins, base, log)
            except RuntimeError as exc:
                setup_error["theirs"] = str(exc)
                log("warning: cannot set up greenback {}: {} (use --only ours "
                    "to skip it)".format(THEIRS_VERSION, exc))
        if "theirs" in pythons:
            infos["theirs"] = query_info("theirs", pythons["theirs"])
        else:
            infos["theirs"] = {"error": setup_error["theirs"]}

    out_lines = []

    def out(line=""):
        print(line, flush=True)
        out_lines.append(line)

    out("greenback comparative benchmark")
    out("CPU     {} ({} logical CPUs)  {} {}".format(
        cpu_model(), os.cpu_count(), platform.system(), platform.release()))
    for impl in impls:
        out(describe_impl(impl, infos[impl]))
    if len(impls) == 2 and not any("error" in infos[i] for i in impls):
        o, t = infos["ours"], infos["theirs"]
        diffs = []
        if o.get("python") != t.get("python"):
            diffs.append("Python")
        for dist in ("trio", "greenlet"):
            if (o.get("versions") or {}).get(dist) != \
                    (t.get("versions") or {}).get(dist):
                diffs.append(dist)
        if diffs:
            out("warning: ours and theirs run different {} versions; the "
                "ratios include that difference".format("/".join(diffs)))
    load = load_average()
    if load is not None and load > 0.5 * (os.cpu_count() or 1):
        out("warning: load average {:.2f} on {} CPUs at start; other work on "
            "this machine adds noise".format(load, os.cpu_count()))
    out("rounds {}, {} samples/process of ~{:g} ms, depth {}, {} tasks for "
        "memory rows".format(args.rounds, args.samples, args.target_ms,
                             args.depth, args.mem_tasks))
    out()

    results = {
        key: {
            loop: {impl: new_cell() for impl in row_impls(key, impls)}
            for loop in row_loops(key, args.loop_list)
        }
        for key in rows
    }
    cold_keys = [key for key in rows if key in COLD_ROWS]

    worker_common = [
        "--target-ms", repr(args.target_ms),
        "--samples", str(args.samples),
        "--depth", str(args.depth),
        "--mem-tasks", str(args.mem_tasks),
    ]

    def processes(key):
        # The cold rows share their processes: count them once.
        if key in cold_keys:
            return args.samples if key == cold_keys[0] else 0
        return 1

    total = args.rounds * sum(
        len(cells) * processes(key)
        for key in rows for cells in results[key].values()
    )
    done = [0]

    def report(rnd, key, loop, impl, shown):
        done[0] += 1
        if args.verbose:
            log("[{}/{}] round {} {} {} {}: {}".format(
                done[0], total, rnd + 1, key, loop, impl, shown))

    for rnd in range(args.rounds):
        for key in rows:
            if key in cold_keys:
                if key == cold_keys[0]:
                    for loop in row_loops(key, args.loop_list):
                        measure_cold_round(
                            {k: results[k][loop] for k in cold_keys}, loop,
                            pythons, setup_error, args, rnd,
                            lambda impl, shown: report(rnd, "cold", loop, impl, shown),
                        )
                continue
            for loop, cells in results[key].items():
                for impl, cell in cells.items():
                    if impl in setup_error:
                        res = {"ok": False, "error": setup_error[impl]}
                    else:
                        res = run_worker(
                            impl, pythons[impl],
                            ["--row", key, "--loop", loop] + worker_common,
                            args.timeout,
                        )
                    if res.get("ok"):
                        cell["rounds"].append(res["values"])
                        cell["unit"] = res["unit"]
                        cell["n"].append(res["n"])
                        shown = "{:.3f} {}".format(median(res["values"]),
                                                   res["unit"])
                    else:
                        cell["errors"].append(res.get("error", "unknown"))
                        shown = "error: " + cell["errors"][-1]
                    report(rnd, key, loop, impl, shown)
        if not args.verbose:
            log("round {}/{} done ({:.0f}s elapsed)".format(
                rnd + 1, args.rounds, time.perf_counter() - started))

    summary = print_table(results, rows, args.loop_list, impls, out)
    elapsed = time.perf_counter() - started
    out()
    load = load_average()
    out("total time {:.0f}s{}".format(
        elapsed, "" if load is None else
        ", load average {:.2f} at the end".format(load)))

    if args.json:
        payload = {
            "theirs_version": THEIRS_VERSION,
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "implementations": {i: infos[i] for i in impls},
            "settings": {
                "rounds": args.rounds, "samples": args.samples,
                "target_ms": args.target_ms, "depth": args.depth,
                "mem_tasks": args.mem_tasks, "loops": args.loop_list,
                "rows": rows,
            },
            "rows": {},
            "geomean_ratio": summary,
            "elapsed_s": elapsed,
        }
        for key in rows:
            payload["rows"][key] = {"label": ROW_LABELS[key]}
            if key in OURS_ONLY_ROWS:
                # No "theirs" entries and no ratio under this row's loops.
                payload["rows"][key]["ours_only"] = True
            for loop in results[key]:
                entry = {}
                for impl in row_impls(key, impls):
                    cell = results[key][loop][impl]
                    best, spread = summarize(cell)
                    entry[impl] = {
                        "best": best, "spread": spread, "unit": cell["unit"],
                        "rounds": cell["rounds"], "iterations": cell["n"],
                        "errors": cell["errors"],
                    }
                if "ratio" in results[key][loop]:
                    entry["ratio"] = results[key][loop]["ratio"]
                payload["rows"][key][loop] = entry
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=2)
            f.write("\n")
        log("saved {}".format(args.json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
