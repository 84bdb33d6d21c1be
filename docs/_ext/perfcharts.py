"""Charts of the comparative benchmark, drawn at build time from its JSON output.

``benchmarks/compare.py --json FILE`` writes every figure it measured; the
files checked in under ``docs/performance/results/`` are such outputs. The
``perf-charts`` directive reads them and draws, with matplotlib (Agg backend,
SVG, nothing fetched), for each file:

* the time rows: ours against greenback 1.3.0, per loop;
* the memory rows, the same way;
* what users would otherwise do: greenback's figure next to the rows that
  measure the alternatives, where the file has such rows (see ALTERNATIVES).

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
# the greenback row each one is the alternative to. compare.py does not
# measure these yet; a JSON file that has them (same format as the other
# rows: rows[key][loop]["ours"]["best"]) gets them charted. Any other row
# whose key starts with "alt." is charted against row 3.
ALTERNATIVES: Dict[str, Tuple[str, str]] = {
    # key: (label, the greenback row it competes with)
    "alt.native_await": ("native await (the caller is async: no sync frame)", "3"),
    "alt.asyncio_to_thread": ("asyncio.to_thread + run_coroutine_threadsafe", "6.sync"),
    "alt.anyio_to_thread": ("anyio to_thread.run_sync + from_thread.run", "6.sync"),
    "alt.trio_to_thread": ("trio.to_thread.run_sync + trio.from_thread.run", "6.sync"),
    "alt.sqlalchemy_execute": ("SQLAlchemy AsyncSession.execute", "sqlalchemy.portal"),
}
# Where the file has no "alt.native_await" row, row 1 stands in for it: a
# bare checkpoint awaited natively is exactly what row 3 does through await_.
NATIVE_STAND_IN = "1"

OURS_COLOR = "#1e7b3c"
THEIRS_COLOR = "#9a9a9a"
ALT_COLOR = "#1a56b0"


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


def _label(data: Dict[str, Any], key: str) -> str:
    if key in ALTERNATIVES:
        return ALTERNATIVES[key][0]
    return str(data["rows"][key].get("label") or key)


def _fmt(value: Optional[float]) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if value >= 10 else f"{value:.3f}"


class Chart:
    """One chart: a title, groups of bars per loop, and its figures."""

    def __init__(self, name: str, title: str, unit: str, alt: str) -> None:
        self.name = name
        self.title = title
        self.unit = unit
        self.alt = alt
        # per loop: [(row label, [(series, value, color)])]
        self.panels: Dict[str, List[Tuple[str, List[Tuple[str, Optional[float], str]]]]] = {}

    def add(self, loop: str, label: str, bars: List[Tuple[str, Optional[float], str]]) -> None:
        self.panels.setdefault(loop, []).append((label, bars))

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
        fig, axes = plt.subplots(1, len(loops), figsize=(5.2 * len(loops) + 2.6, height), sharey=True, squeeze=False)
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
            ax.set_xlabel(self.unit.replace("us/", "µs/"))
            ax.margins(x=0.18)
            ax.grid(axis="x", color="#e3e3e3")
            ax.set_axisbelow(True)
        axes[0][0].invert_yaxis()  # the first row on top (the panels share this axis: once)
        handles, names = axes[0][0].get_legend_handles_labels()
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

    for kind, unit_test, what in (
        ("time", lambda u: u != MEMORY_UNIT, "time per operation (lower is better)"),
        ("memory", lambda u: u == MEMORY_UNIT, "memory per parked task (lower is better)"),
    ):
        keys = [k for k in rows if not _is_alternative(k) and unit_test(_unit(data["rows"][k].get(loops[0], {})) or "")]
        if not keys:
            continue
        unit = _unit(data["rows"][keys[0]][loops[0]]) or ""
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
                ratio = entry.get("ratio")
                table.append([f"{key} {_label(data, key)}", loop, _fmt(ours), _fmt(their), f"{ratio:.2f}" if isinstance(ratio, (int, float)) else "–"])
        if not chart.empty():
            out.append((chart, table))

    # What users would otherwise do: by the greenback row each alternative competes with.
    groups: Dict[str, List[str]] = {}
    for key in rows:
        if _is_alternative(key):
            groups.setdefault(ALTERNATIVES.get(key, ("", "3"))[1], []).append(key)
    if "alt.native_await" not in rows and NATIVE_STAND_IN in rows and "3" in rows:
        groups.setdefault("3", []).insert(0, NATIVE_STAND_IN)
    chart = Chart(
        f"alternatives-{stem}",
        f"{python}: greenback and what you would do without it (lower is better)",
        "us/op",
        f"Bar chart, {python}: greenback's figures next to the ways of doing the same without greenback "
        "that the benchmark measured.",
    )
    table = [["operation", "loop", "way", "µs/op"]]
    for base, alternatives in groups.items():
        if base not in data["rows"]:
            continue
        for loop in loops:
            entry = data["rows"][base].get(loop)
            if not entry:
                continue
            bars = [("this greenback", _best(entry.get("ours")), OURS_COLOR), (theirs, _best(entry.get("theirs")), THEIRS_COLOR)]
            lines = [[f"{base} {_label(data, base)}", loop, "this greenback", _fmt(bars[0][1])], ["", loop, theirs, _fmt(bars[1][1])]]
            for key in alternatives:
                alt_entry = data["rows"][key].get(loop) or {}
                value = _best(alt_entry.get("ours")) if alt_entry.get("ours") else _best(alt_entry.get("theirs"))
                if value is None:
                    continue
                label = "native await of the checkpoint (row 1)" if key == NATIVE_STAND_IN else _label(data, key)
                bars.append((label, value, ALT_COLOR if key != NATIVE_STAND_IN else "#5b8fd6"))
                lines.append(["", loop, label, _fmt(value)])
            if len(bars) > 2:
                chart.add(loop, f"{base}  {_label(data, base)}", bars)
                table.extend(lines)
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
    return tuple(int(n) for n in re.findall(r"\d+", path.stem)) or (0,)


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
