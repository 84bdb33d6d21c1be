#!/usr/bin/env python3
"""Compare the workspace greenback ("ours") with greenback 1.3.0 ("theirs").

Every figure is measured in a fresh subprocess (see ``_worker.py``); ours and
theirs take turns, row by row, within each round.  Run with ``--help`` for the
options and see ``README.md`` next to this file for what each row measures.
"""

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
WORKER = BENCH_DIR / "_worker.py"
RESULT_MARK = "@@greenback-bench-result@@"

THEIRS_VERSION = "1.3.0"
# Distributions whose versions "theirs" copies from "ours" (when ours has them).
PINNED_DISTS = ("trio", "greenlet", "sniffio", "outcome")

# (key, label) in display order.  ``--rows 6`` selects every key in group 6.
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
]
ROW_LABELS = dict(ROWS)
MEMORY_ROWS = ("9.bare", "9.portal")
LOOPS = ("trio", "asyncio")
IMPLS = ("ours", "theirs")


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


def run_worker(impl, python, worker_args, timeout):
    """Run the worker; return its JSON result, or {"ok": False, "error": ...}."""
    prefix, env = impl_command(impl, python)
    cmd = prefix + [str(WORKER)] + worker_args
    try:
        proc = subprocess.run(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            timeout=timeout,
            universal_newlines=True,
        )
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
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    if proc.returncode < 0:
        what = "killed by signal {}".format(-proc.returncode)
    else:
        what = "exit status {}".format(proc.returncode)
    return {"ok": False, "error": "{}: {}".format(what, tail[:200])}


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
    digits = 2 if unit == "KiB/task" or value >= 10 else 3
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
    ratios = {"time": [], "memory": []}
    for key in rows:
        for loop in loops:
            cells = [results[key][loop].get(i) for i in impls]
            unit = next((c["unit"] for c in cells if c and c.get("unit")), "")
            line = ["{:8s} {}".format(key, ROW_LABELS[key]), loop,
                    unit or ("KiB/task" if key in MEMORY_ROWS else "us/op")]
            line += [cell_text(c) for c in cells]
            if len(impls) == 2:
                a = summarize(cells[0])[0] if cells[0] else None
                b = summarize(cells[1])[0] if cells[1] else None
                if a is not None and b:
                    ratio = a / b
                    line.append("{:.2f}".format(ratio))
                    results[key][loop]["ratio"] = ratio
                    kind = "memory" if key in MEMORY_ROWS else "time"
                    if ratio > 0:
                        ratios[kind].append(ratio)
                else:
                    line.append("-")
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
    return summary


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
                   help="comma-separated rows or row groups, e.g. 1,3,8.2,9 "
                   "(default: all; see --list-rows)")
    p.add_argument("--loops", default=",".join(LOOPS), metavar="LIST",
                   help="comma-separated event loops (default: trio,asyncio)")
    p.add_argument("--rounds", type=int,
                   help="rounds (fresh processes) per cell (default 5, "
                   "--quick 2)")
    p.add_argument("--samples", type=int,
                   help="timed samples per process (default 3, --quick 2)")
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
        for key, label in ROWS:
            print("{:9s} {}".format(key, label))
        return 0
    rows = select_rows(args.rows)
    impls = [args.only] if args.only else list(IMPLS)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

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

    results = {key: {loop: {} for loop in args.loop_list} for key in rows}
    for key in rows:
        for loop in args.loop_list:
            for impl in impls:
                results[key][loop][impl] = {"rounds": [], "errors": [],
                                            "unit": None, "n": []}

    worker_common = [
        "--target-ms", repr(args.target_ms),
        "--samples", str(args.samples),
        "--depth", str(args.depth),
        "--mem-tasks", str(args.mem_tasks),
    ]
    total = args.rounds * len(rows) * len(args.loop_list) * len(impls)
    done = 0
    for rnd in range(args.rounds):
        for key in rows:
            for loop in args.loop_list:
                for impl in impls:
                    cell = results[key][loop][impl]
                    if impl in setup_error:
                        res = {"ok": False, "error": setup_error[impl]}
                    else:
                        res = run_worker(
                            impl, pythons[impl],
                            ["--row", key, "--loop", loop] + worker_common,
                            args.timeout,
                        )
                    done += 1
                    if res.get("ok"):
                        cell["rounds"].append(res["values"])
                        cell["unit"] = res["unit"]
                        cell["n"].append(res["n"])
                        shown = "{:.3f} {}".format(median(res["values"]),
                                                   res["unit"])
                    else:
                        cell["errors"].append(res.get("error", "unknown"))
                        shown = "error: " + cell["errors"][-1]
                    if args.verbose:
                        log("[{}/{}] round {} {} {} {}: {}".format(
                            done, total, rnd + 1, key, loop, impl, shown))
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
            for loop in args.loop_list:
                entry = {}
                for impl in impls:
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
