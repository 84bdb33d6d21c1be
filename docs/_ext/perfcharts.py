"""Charts of the comparative benchmark, drawn at build time from its JSON output.

``benchmarks/compare.py --json FILE`` writes every figure it measured; the
files checked in under ``docs/performance/results/`` are such outputs. The
``perf-charts`` directive reads them and draws, with matplotlib (Agg backend,
SVG, nothing fetched), for each file:

* the time rows: ours against greenback 1.3.0, per loop;
* the memory rows, the same way;
* the cold start (a whole process that imports greenback and opens its first
  portal): its wall time and peak RSS, ours against 1.3.0;
* what users would otherwise do: greenback's figure next to the rows that
  measure the alternatives (see ALTERNATIVES), one chart per greenback row
  they compete with.

Below each chart, a table gives the figures. The SVG files go to
``_build/charts/`` under the source directory (git-ignored), and are drawn
again only when their JSON file changes.

Usage in a MyST page::

    ```{perf-charts} results/*.json
    ```
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

MEMORY_UNIT = "KiB/task"

# Rows that measure what users would do without greenback, by row key, with
# the greenback row each one is the alternative to. compare.py measures them
# for ours' interpreter only (the JSON marks such rows "ours_only"). Any other
# row whose key starts with "alt." is charted against row 3.
ALTERNATIVES: Dict[str, Tuple[str, str]] = {
    # key: (label, the greenback row it competes with)
    "alt.asyncio_to_thread": ("asyncio.to_thread + run_coroutine_threadsafe", "3"),
    "alt.anyio_to_thread": ("anyio to_thread.run_sync + from_thread.run", "3"),
    "alt.trio_to_thread": ("trio.to_thread.run_sync + trio.from_thread.run", "3"),
    "alt.sqlalchemy_execute": ("SQLAlchemy AsyncSession.execute", "sqlalchemy.portal"),
}
# What the alternatives to a greenback row do, for their chart's title.
ALTERNATIVE_TITLES = {
    "3": "one call from sync code into the loop",
    "sqlalchemy.portal": "one SQLAlchemy statement",
}
# Row 1 is the native await: a bare checkpoint awaited by async code, exactly
# what row 3 does through await_ from sync code. It stands next to row 3.
NATIVE_ROW = "1"
# The cold-start rows: each is a panel of one chart, titled so.
COLD_ROWS = {"cold.wall": "wall time of the process", "cold.rss": "peak RSS of the process"}

OURS_COLOR = "#1e7b3c"
THEIRS_COLOR = "#9a9a9a"
ALT_COLOR = "#1a56b0"
NATIVE_COLOR = "#5b8fd6"


def _python_of(data: Dict[str, Any]) -> str:
    impl = data.get("implementations", {}).get("ours", {})
    return f"{impl.get('python_implementation', 'Python')} {impl.get('python', '?')}"


def _best(cell: Any) -> Optional[float]:
    if isinstance(cell, dict) and isinstance(cell.get("best"), (int, float)):
        return float(cell["best"])
    return None


def _unit(entry: Dict[str, Any]) -> Optional[str]:
    for impl in ("ours", "theirs"):
        cell = entry.get(impl)
        if isinstance(cell, dict) and cell.get("unit"):
            return str(cell["unit"])
    return None


def _rows(data: Dict[str, Any]) -> List[str]:
    order = data.get("settings", {}).get("rows") or list(data.get("rows", {}))
    return [key for key in order if key in data.get("rows", {})]


def _is_alternative(key: str) -> bool:
    return key in ALTERNATIVES or key.startswith("alt.")


def _compared(data: Dict[str, Any], key: str) -> bool:
    """Whether the row has figures of both sides (not an alternative, not ours alone)."""
    return not _is_alternative(key) and not data["rows"][key].get("ours_only") and key not in COLD_ROWS


def _label(data: Dict[str, Any], key: str) -> str:
    if key in ALTERNATIVES:
        return ALTERNATIVES[key][0]
    return str(data["rows"][key].get("label") or key)


def _fmt(value: Optional[float]) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if value >= 10 else f"{value:.3f}"


class Chart:
    """One chart: a title, panels side by side (one per loop, usually) of
    groups of bars, and its figures."""

    def __init__(self, name: str, title: str, unit: str, alt: str, shared_rows: bool = True) -> None:
        self.name = name
        self.title = title
        self.unit = unit
        self.alt = alt
        # per panel: [(row label, [(series, value, color)])]
        self.panels: Dict[str, List[Tuple[str, List[Tuple[str, Optional[float], str]]]]] = {}
        # The x axis label of a panel whose unit is not the chart's.
        self.units: Dict[str, str] = {}
        # Whether every panel has the same rows (then only the first names them).
        self.shared_rows = shared_rows

    def add(self, panel: str, label: str, bars: List[Tuple[str, Optional[float], str]], unit: Optional[str] = None) -> None:
        self.panels.setdefault(panel, []).append((label, bars))
        if unit is not None:
            self.units[panel] = unit

    def empty(self) -> bool:
        return not any(any(v is not None for _, v, _ in bars) for rows in self.panels.values() for _, bars in rows)

    def draw(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        matplotlib.rcParams.update(
            {
                "svg.fonttype": "none",  # text stays text: smaller, selectable, searchable
                "svg.hashsalt": "greenback-docs",  # the same ids every build
                "font.size": 10,
                "axes.spines.top": False,
                "axes.spines.right": False,
            }
        )
        loops = list(self.panels)
        longest = max(len(rows) for rows in self.panels.values())
        per_row = max(len(bars) for rows in self.panels.values() for _, bars in rows)
        height = max(2.6, 1.4 + longest * (0.18 + 0.2 * per_row))
        # 2.6 inches for row names: once, or beside every panel.
        width = max(9.0, 5.2 * len(loops) + 2.6 * (1 if self.shared_rows else len(loops)))  # 9: room for the title
        fig, axes = plt.subplots(1, len(loops), figsize=(width, height), sharey=self.shared_rows, squeeze=False)
        for ax, loop in zip(axes[0], loops):
            rows = self.panels[loop]
            slot = 0.8 / per_row
            labels_drawn = set()
            for index, (_, bars) in enumerate(rows):
                for position, (series, value, color) in enumerate(bars):
                    if value is None:
                        continue
                    y = index - 0.4 + slot * (position + 0.5)
                    ax.barh(y, value, height=slot * 0.92, color=color, label=None if series in labels_drawn else series)
                    labels_drawn.add(series)
                    ax.text(value, y, f" {_fmt(value)}", va="center", fontsize=8)
            ax.set_yticks(range(len(rows)), [label for label, _ in rows])
            ax.set_title(loop)
            ax.set_xlabel(self.units.get(loop, self.unit).replace("us/", "µs/"))
            ax.margins(x=0.18)
            ax.grid(axis="x", color="#e3e3e3")
            ax.set_axisbelow(True)
        # The first row on top (panels that share their rows share this axis: once).
        for ax in axes[0][:1] if self.shared_rows else axes[0]:
            ax.invert_yaxis()
        handles, names = [], []
        for ax in axes[0]:  # every series once, whichever panel has it
            for handle, name in zip(*ax.get_legend_handles_labels()):
                if name not in names:
                    handles.append(handle)
                    names.append(name)
        fig.legend(handles, names, loc="lower center", ncol=len(names), frameon=False, bbox_to_anchor=(0.5, 0.0))
        fig.suptitle(self.title, fontsize=12)
        fig.tight_layout(rect=(0, 0.45 / height, 1, 1))  # the legend's 0.45 inch at the bottom
        fig.savefig(path, format="svg", metadata={"Date": None})
        plt.close(fig)


def charts_for(data: Dict[str, Any], stem: str) -> List[Tuple[Chart, List[List[str]]]]:
    """The charts of one result file, each with its table (header row first)."""
    python = _python_of(data)
    theirs = f"greenback {data.get('theirs_version', '1.3.0')}"
    loops = data.get("settings", {}).get("loops") or ["trio", "asyncio"]
    rows = _rows(data)
    out: List[Tuple[Chart, List[List[str]]]] = []

    def first_unit(key: str) -> str:
        return next((u for u in (_unit(data["rows"][key].get(loop) or {}) for loop in loops) if u), "")

    for kind, unit_test, what in (
        ("time", lambda u: u != MEMORY_UNIT, "time per operation (lower is better)"),
        ("memory", lambda u: u == MEMORY_UNIT, "memory per parked task (lower is better)"),
    ):
        keys = [k for k in rows if _compared(data, k) and unit_test(first_unit(k))]
        if not keys:
            continue
        unit = first_unit(keys[0])
        chart = Chart(
            f"{kind}-{stem}",
            f"{python}: {what}",
            unit,
            f"Bar chart, {python}: {what} of each benchmark row, this greenback against {theirs}, "
            f"for {' and '.join(loops)}.",
        )
        table = [["row", "loop", f"ours ({unit})", f"{theirs} ({unit})", "ours ÷ theirs"]]
        for key in keys:
            for loop in loops:
                entry = data["rows"][key].get(loop)
                if not entry:
                    continue
                ours, their = _best(entry.get("ours")), _best(entry.get("theirs"))
                chart.add(loop, f"{key}  {_label(data, key)}", [("this greenback", ours, OURS_COLOR), (theirs, their, THEIRS_COLOR)])
                table.append([f"{key} {_label(data, key)}", loop, _fmt(ours), _fmt(their), _ratio(entry)])
        if not chart.empty():
            out.append((chart, table))

    cold = _cold_chart(data, stem, python, theirs, loops)
    if cold is not None:
        out.append(cold)
    out.extend(_alternative_charts(data, stem, python, theirs, loops))
    return out


def _ratio(entry: Dict[str, Any]) -> str:
    ratio = entry.get("ratio")
    return f"{ratio:.2f}" if isinstance(ratio, (int, float)) else "–"


def _cold_chart(
    data: Dict[str, Any], stem: str, python: str, theirs: str, loops: List[str]
) -> Optional[Tuple[Chart, List[List[str]]]]:
    """Wall time and peak RSS of a process that imports greenback and opens
    its first portal: a panel each, a bar pair per loop."""
    keys = [k for k in COLD_ROWS if k in data["rows"]]
    what = "a process that imports greenback and opens its first portal (lower is better)"
    chart = Chart(
        f"cold-{stem}",
        f"{python}: {what}",
        "",
        f"Bar chart, {python}: wall time and peak memory of {what.split(' (')[0]}, "
        f"this greenback against {theirs}, for {' and '.join(loops)}.",
    )
    table = [["measure", "loop", "ours", theirs, "ours ÷ theirs"]]
    for key in keys:
        for loop in loops:
            entry = data["rows"][key].get(loop)
            if not entry:
                continue
            unit = _unit(entry) or ""
            ours, their = _best(entry.get("ours")), _best(entry.get("theirs"))
            chart.add(COLD_ROWS[key], loop, [("this greenback", ours, OURS_COLOR), (theirs, their, THEIRS_COLOR)], unit)
            table.append([COLD_ROWS[key], loop, f"{_fmt(ours)} {unit}", f"{_fmt(their)} {unit}", _ratio(entry)])
    return None if chart.empty() else (chart, table)


def _alternative_charts(
    data: Dict[str, Any], stem: str, python: str, theirs: str, loops: List[str]
) -> List[Tuple[Chart, List[List[str]]]]:
    """One chart per greenback row that alternatives compete with: the
    greenback figures (both versions), then each alternative's."""
    rows = _rows(data)
    groups: Dict[str, List[str]] = {}
    for key in rows:
        if _is_alternative(key):
            groups.setdefault(ALTERNATIVES.get(key, ("", "3"))[1], []).append(key)
    if "3" in groups and NATIVE_ROW in rows:
        groups["3"].insert(0, NATIVE_ROW)
    out = []
    for base, alternatives in groups.items():
        if base not in data["rows"]:
            continue
        slug = base.replace(".", "-")
        what = f"{ALTERNATIVE_TITLES.get(base, _label(data, base))}, with and without greenback (lower is better)"
        chart = Chart(
            f"alternatives-{slug}-{stem}",
            f"{python}: {what}",
            "us/op",
            f"Bar chart, {python}: greenback's figures for {_label(data, base)} next to the ways of doing "
            "the same without greenback that the benchmark measured.",
            shared_rows=False,  # the loops have different alternatives
        )
        table = [["loop", "way", "µs/op", "÷ this greenback"]]
        for loop in loops:
            entry = data["rows"][base].get(loop)
            if not entry:
                continue
            ours = _best(entry.get("ours"))
            # (way, series of the legend, figure, colour): a bar each.
            ways = [
                (f"greenback: {_label(data, base)}", "this greenback", ours, OURS_COLOR),
                (f"{theirs}: {_label(data, base)}", theirs, _best(entry.get("theirs")), THEIRS_COLOR),
            ]
            for key in alternatives:
                value = _best((data["rows"][key].get(loop) or {}).get("ours"))
                if key == NATIVE_ROW:
                    ways.append(("native await, from async code", "native await", value, NATIVE_COLOR))
                elif value is not None:
                    ways.append((_label(data, key), "without greenback", value, ALT_COLOR))
            if not any(series == "without greenback" for _, series, _, _ in ways):
                continue  # no alternative measured under this loop
            for way, series, value, color in ways:
                if value is None:
                    continue
                chart.add(loop, way, [(series, value, color)])
                table.append([loop, way, _fmt(value), f"{value / ours:.2f}" if ours else "–"])
        if not chart.empty():
            out.append((chart, table))
    return out


def _markdown_table(table: List[List[str]]) -> List[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(cell(c) for c in table[0]) + " |", "|" + "---|" * len(table[0])]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in table[1:]]
    return lines


def _python_sort_key(path: Path) -> Tuple[int, ...]:
    # By version; of one version, CPython (1) ahead of PyPy (0) once reversed.
    version = tuple(int(n) for n in re.findall(r"\d+", path.stem)) or (0,)
    return version + (0 if path.stem.startswith("pypy") else 1,)


class PerfChartsDirective(SphinxDirective):
    """``{perf-charts} GLOB``: charts and tables of every result file matching GLOB."""

    required_arguments = 1
    has_content = False

    def run(self) -> List[nodes.Node]:
        docdir = Path(self.env.doc2path(self.env.docname)).parent
        files = sorted(docdir.glob(self.arguments[0]), key=_python_sort_key, reverse=True)
        if not files:
            raise self.error(f"perf-charts: no result file matches {self.arguments[0]!r} in {docdir}")
        outdir = Path(self.env.srcdir) / "_build" / "charts"
        outdir.mkdir(parents=True, exist_ok=True)
        text: List[str] = []
        for path in files:
            self.env.note_dependency(str(path))
            raw = path.read_bytes()
            data = json.loads(raw)
            digest = hashlib.sha256(raw).hexdigest()[:12]
            settings = data.get("settings", {})
            ours = data.get("implementations", {}).get("ours", {})
            versions = ours.get("versions", {})
            text += [
                f"```{{rubric}} {_python_of(data)}",
                "```",
                "",
                f"`{path.name}`: {data.get('cpu', '?')}, {data.get('cpu_count', '?')} logical CPUs; "
                f"greenlet {versions.get('greenlet', '?')}, trio {versions.get('trio', '?')}; "
                f"{settings.get('rounds', '?')} rounds × {settings.get('samples', '?')} samples of "
                f"{settings.get('target_ms', '?')} ms per side. Geometric mean of ours ÷ theirs: "
                + ", ".join(f"{k} {v:.2f}" for k, v in (data.get("geomean_ratio") or {}).items() if isinstance(v, (int, float)))
                + ".",
                "",
            ]
            for chart, table in charts_for(data, path.stem):
                target = outdir / f"{chart.name}-{digest}.svg"
                if not target.exists():
                    chart.draw(target)
                text += [
                    f"```{{figure}} /_build/charts/{target.name}",
                    f":alt: {chart.alt}",
                    f":name: chart-{chart.name}",
                    "",
                    chart.title,
                    "```",
                    "",
                    *_markdown_table(table),
                    "",
                ]
        container = nodes.container(classes=["perf-charts"])
        self.state.nested_parse(StringList(text, source=self.get_source_info()[0]), self.content_offset, container)
        return [container]


def setup(app: Sphinx) -> Dict[str, Any]:
    app.add_directive("perf-charts", PerfChartsDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
