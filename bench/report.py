# -*- test-case-name: tests.integration.test_bench -*-
"""
What a benchmark run reports: a text table per scenario with each proxy's
figures and the twisted_rproxy/nginx ratio, the issue's targets with the
value measured for each, and the same figures as JSON plus a PNG bar chart
of the ratios.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

SUBJECT, REFERENCE = "rproxy", "nginx"
"""The ratio reported everywhere is SUBJECT/REFERENCE."""

Column = Tuple[str, str, str]
"""(figure key, column heading, format spec)."""

COLUMNS: Dict[str, Sequence[Column]] = {
    "wrk": (
        ("rps", "req/s", ",.0f"),
        ("p50_ms", "p50 ms", ".2f"),
        ("p99_ms", "p99 ms", ".2f"),
        ("cpu_percent", "CPU %", ".0f"),
        ("per_cpu_second", "req/CPU-s", ",.0f"),
        ("rss_mib", "RSS MiB", ".1f"),
        ("peak_rss_mib", "peak MiB", ".1f"),
        ("error_total", "errors", "d"),
        ("other_on_cpu_percent", "other %", ".0f"),
    ),
    "h2load": (
        ("rps", "req/s", ",.0f"),
        ("mean_ms", "mean ms", ".2f"),
        ("max_ms", "max ms", ".2f"),
        ("cpu_percent", "CPU %", ".0f"),
        ("per_cpu_second", "req/CPU-s", ",.0f"),
        ("rss_mib", "RSS MiB", ".1f"),
        ("peak_rss_mib", "peak MiB", ".1f"),
        ("error_total", "errors", "d"),
        ("other_on_cpu_percent", "other %", ".0f"),
    ),
    "sse": (
        ("events_per_s", "events/s", ",.0f"),
        ("p50_ms", "p50 ms", ".2f"),
        ("p99_ms", "p99 ms", ".2f"),
        ("jitter_p99_ms", "jitter p99", ".2f"),
        ("cpu_percent", "CPU %", ".0f"),
        ("rss_mib", "RSS MiB", ".1f"),
        ("events", "events", "d"),
    ),
    "ws": (
        ("messages_per_s", "msg/s", ",.0f"),
        ("p50_ms", "p50 ms", ".2f"),
        ("p99_ms", "p99 ms", ".2f"),
        ("cpu_percent", "CPU %", ".0f"),
        ("rss_mib", "RSS MiB", ".1f"),
        ("errors", "errors", "d"),
        ("other_on_cpu_percent", "other %", ".0f"),
    ),
    "idle": (
        ("opened", "conns", "d"),
        ("baseline_rss_mib", "base MiB", ".1f"),
        ("rss_mib", "RSS MiB", ".1f"),
        ("kib_per_connection", "KiB/conn", ".2f"),
        ("open_seconds", "open s", ".1f"),
        ("failed", "failed", "d"),
    ),
}
"""The columns of each kind of scenario's table (and the figures rated)."""

OTHER_WARNING = 20
"""Percent of the proxy's pinned CPU taken by other work that earns a warning."""

SATURATED = 90
"""CPU percent below which a proxy's requests/s were set by the load side
(wrk and the backend on the other core), not by the proxy."""

THROUGHPUT = {"wrk": "rps", "h2load": "rps", "sse": "events_per_s", "ws": "messages_per_s", "idle": None}
"""The throughput figure of each kind, charted as the first ratio."""

_NOT_RATED = {"error_total", "events", "opened", "failed", "open_seconds",
              "other_on_cpu_percent", "errors"}
"""Counts shown in tables but meaningless as a ratio."""


def addPerCpuSecond(kind: str, figures: Dict[str, Any]) -> None:
    """
    Add C{per_cpu_second}: throughput over the CPU seconds the proxy used
    for it.  When nginx idles at half its core waiting for wrk, its
    requests/s flatter the ratio; requests per CPU-second compare what
    each request costs the proxy, whoever set the pace.
    """
    if not any(key == "per_cpu_second" for key, _, _ in COLUMNS[kind]):
        return
    throughput, cpu = figures.get(THROUGHPUT[kind] or ""), figures.get("cpu_percent")
    if isinstance(throughput, (int, float)) and cpu:
        figures["per_cpu_second"] = throughput * 100 / cpu


def ratios(kind: str, results: Dict[str, Dict[str, Any]]) -> Dict[str, Optional[float]]:
    """
    SUBJECT/REFERENCE for every rated figure of a scenario (None where
    either proxy lacks it or nginx's is zero).

    @param kind: the scenario's kind (a key of L{COLUMNS}).
    @param results: figures by proxy name.
    """
    subject, reference = results.get(SUBJECT), results.get(REFERENCE)
    out: Dict[str, Optional[float]] = {}
    for key, _, _ in COLUMNS[kind]:
        if key in _NOT_RATED:
            continue
        try:
            out[key] = subject[key] / reference[key]  # type: ignore[index]
        except (TypeError, KeyError, ZeroDivisionError):
            out[key] = None
    return out


def _cell(value: Any, spec: str) -> str:
    """One table cell; "-" for a missing figure."""
    if value is None:
        return "-"
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


def formatTable(scenario: Dict[str, Any]) -> str:
    """
    A scenario's text table: one row per proxy, then the ratio row.

    @param scenario: one entry of the JSON's C{scenarios}.
    """
    columns = COLUMNS[scenario["kind"]]
    rows: List[List[str]] = [["proxy"] + [heading for _, heading, _ in columns]]
    for name, figures in scenario["results"].items():
        if "error" in figures:
            error = figures["error"]
            rows.append([name, error if error.startswith("skipped") else f"failed: {error}"])
            continue
        rows.append([name] + [_cell(figures.get(k), spec) for k, _, spec in columns])
    rated = scenario.get("ratio") or {}
    if any(v is not None for v in rated.values()):
        rows.append([f"{SUBJECT}/{REFERENCE}"] + [
            "" if k in _NOT_RATED else _cell(rated.get(k), ".2f") for k, _, _ in columns
        ])
    full = [r for r in rows if len(r) == len(rows[0])]
    widths = [max(len(r[i]) for r in full) for i in range(len(rows[0]))]
    widths[0] = max(len(r[0]) for r in rows)
    lines = [f"== {scenario['name']}: {scenario['title']}"]
    crowded = [name for name, figures in scenario["results"].items()
               if (figures.get("other_on_cpu_percent") or 0) > OTHER_WARNING]
    for row in rows:
        if len(row) != len(rows[0]):
            lines.append(f"  {row[0]:<{widths[0]}}  {row[1]}")
            continue
        lines.append("  " + "  ".join(
            cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i])
            for i, cell in enumerate(row)))
    if crowded:
        lines.append(f"  warning: other work used over {OTHER_WARNING}% of the proxy's CPU "
                     f"during {', '.join(crowded)}: those figures are low")
    idle = [f"{name} {figures['cpu_percent']:.0f}%" for name, figures in scenario["results"].items()
            if "per_cpu_second" in figures and figures["cpu_percent"] < SATURATED]
    if idle:
        lines.append(f"  note: {', '.join(idle)} of its CPU: the load side set that req/s; "
                     "req/CPU-s compares the cost of a request")
    return "\n".join(lines)


def _figure(data: Dict[str, Any], scenario: str, proxy: str, key: str) -> Optional[float]:
    """One figure of the run, or None when that scenario or proxy did not run."""
    try:
        value = data["scenarios"][scenario]["results"][proxy][key]
    except KeyError:
        return None
    return value if isinstance(value, (int, float)) else None


def _ratioOf(data: Dict[str, Any], scenario: str, key: str) -> Optional[float]:
    """A scenario's SUBJECT/REFERENCE ratio for C{key}, or None."""
    try:
        value = data["scenarios"][scenario]["ratio"][key]
    except KeyError:
        return None
    return value if isinstance(value, (int, float)) else None


def _growthPerConnection(data: Dict[str, Any]) -> Optional[float]:
    """
    How much more twisted_rproxy's peak RSS was in the 1 MiB run than in
    the 1 KiB run, per client connection, in KiB: about 1,024 would mean
    whole bodies held per connection, near 0 means streaming.
    """
    small = _figure(data, "get1k", SUBJECT, "peak_rss_mib")
    large = _figure(data, "get1m", SUBJECT, "peak_rss_mib")
    connections = _figure(data, "get1m", SUBJECT, "connections")
    if small is None or large is None or not connections:
        return None
    return (large - small) * 1024 / connections


def _versus(data: Dict[str, Any], scenario: str, other: str, key: str) -> Optional[float]:
    """SUBJECT's C{key} over C{other}'s in C{scenario}, or None."""
    mine = _figure(data, scenario, SUBJECT, key)
    theirs = _figure(data, scenario, other, key)
    if mine is None or not theirs:
        return None
    return mine / theirs


def _scaling(data: Dict[str, Any], proxy: str) -> Optional[float]:
    """
    C{proxy}'s requests/s with 2 workers over its requests/s with one.
    """
    one = _figure(data, "get1k", proxy, "rps")
    two = _figure(data, "get1k_2w", proxy, "rps")
    if not one or two is None:
        return None
    return two / one


TARGETS: Sequence[Tuple[str, str, Callable[[Dict[str, Any]], Optional[float]],
                        Callable[[float], bool]]] = (
    ("get1k requests/s >= 50% of nginx", "ratio",
     lambda d: _ratioOf(d, "get1k", "rps"), lambda v: v >= 0.5),
    ("get1k requests/s >= 1.5x Caddy's", "x",
     lambda d: _versus(d, "get1k", "caddy", "rps"), lambda v: v >= 1.5),
    ("get1k p99 latency <= 2x nginx", "ratio",
     lambda d: _ratioOf(d, "get1k", "p99_ms"), lambda v: v <= 2.0),
    ("get64k requests/s >= 90% of nginx", "ratio",
     lambda d: _ratioOf(d, "get64k", "rps"), lambda v: v >= 0.9),
    ("get1m memory flat (peak RSS growth over get1k < 256 KiB per connection; "
     "a whole-body copy would be 1,024)",
     "KiB/conn", _growthPerConnection, lambda v: v < 256),
    ("idle10k RSS <= 2.5 KiB per idle connection", "KiB/conn",
     lambda d: _figure(d, "idle10k", SUBJECT, "kib_per_connection"), lambda v: v <= 2.5),
    ("2 workers scale throughput (get1k_2w / get1k requests/s > 1; on 2 cores the "
     "workers share a CPU with wrk and the backend)", "x",
     lambda d: _scaling(d, SUBJECT), lambda v: v > 1.0),
)
"""Issue 3's measurable targets: (text, unit, measure, met).  Measured and
reported, never asserted."""


def evaluateTargets(data: Dict[str, Any]) -> List[Dict[str, Any]]:
    """
    Each target with the value measured in this run and whether it is met
    (None when the scenarios it needs did not run).

    @param data: the run's JSON document.
    """
    out = []
    for text, unit, measure, met in TARGETS:
        value = measure(data)
        out.append({"target": text, "unit": unit, "value": value,
                    "met": None if value is None else bool(met(value))})
    return out


def formatTargets(targets: Sequence[Dict[str, Any]]) -> str:
    """The targets as text lines: measured value and met / NOT met."""
    lines = [f"== targets (issue 3; {SUBJECT} vs {REFERENCE}, same run)"]
    for target in targets:
        if target["value"] is None:
            verdict = "not measured in this run"
        else:
            verdict = (f"{target['value']:.2f} {target['unit']}: "
                       + ("met" if target["met"] else "NOT met"))
        lines.append(f"  {target['target']}: {verdict}")
    return "\n".join(lines)


def writeJson(data: Dict[str, Any], path: Path) -> None:
    """Write the run's document (tables' figures, ratios, targets, meta)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def writeChart(data: Dict[str, Any], path: Path) -> bool:
    """
    A PNG bar chart of the SUBJECT/REFERENCE ratios, one group of bars per
    scenario: throughput, p99 latency, CPU and RSS (KiB per connection for
    the idle scenarios), on a log scale with the parity line at 1.

    @return: False when matplotlib is unavailable (nothing written).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    series: Dict[str, List[Optional[float]]] = {
        "throughput": [], "p99 latency": [], "CPU": [], "RSS": []}
    names: List[str] = []
    for name, scenario in data["scenarios"].items():
        rated = scenario.get("ratio") or {}
        if not any(v is not None for v in rated.values()):
            continue
        names.append(name)
        throughput = THROUGHPUT[scenario["kind"]]
        series["throughput"].append(rated.get(throughput) if throughput else None)
        series["p99 latency"].append(rated.get("p99_ms"))
        series["CPU"].append(rated.get("cpu_percent"))
        series["RSS"].append(rated.get("kib_per_connection", rated.get("rss_mib")))
    figure, axes = plt.subplots(figsize=(max(6, 1.3 * len(names) + 2), 4.5))
    width = 0.8 / len(series)
    for index, (label, values) in enumerate(series.items()):
        positions = [i + (index - (len(series) - 1) / 2) * width for i in range(len(names))]
        axes.bar(positions, [v if v else float("nan") for v in values], width, label=label)
    # Log scale: a ratio of 0.2 and one of 5 are equally far from parity.
    axes.set_yscale("log")
    ticks = [0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50]
    axes.set_yticks(ticks)
    axes.set_yticklabels([f"{t:g}" for t in ticks])
    axes.minorticks_off()
    shown = [v for values in series.values() for v in values if v]
    if shown:
        axes.set_ylim(min(shown + [1.0]) / 1.5, max(shown + [1.0]) * 1.5)
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.set_xticks(range(len(names)))
    axes.set_xticklabels(names, rotation=20)
    axes.set_ylabel(f"{SUBJECT} / {REFERENCE}")
    axes.set_title(f"{SUBJECT} / {REFERENCE} ({data['meta'].get('started', '')})")
    axes.legend(fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True
