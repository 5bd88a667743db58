"""Benchmark runs: read an instances CSV, verify each instance, write results, a per-property
table (markdown) and a cactus plot. Used by ``meetup-ros benchmark`` and
``scripts/benchmark_acasxu.py``.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from meetup_ros.verification import VerificationInputError, exact, require_file

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Instance:
    """One benchmark row: network file, property file, timeout in seconds."""

    onnx: Path
    vnnlib: Path
    timeout_s: float

    @property
    def prop_name(self) -> str:
        return self.vnnlib.stem

    @property
    def name(self) -> str:
        return f"{self.onnx.stem}:{self.vnnlib.stem}"


@dataclass
class InstanceResult:
    """A verifier's answer on one instance."""

    onnx: str
    vnnlib: str
    prop: str
    tool: str
    status: str
    time_s: float
    timeout_s: float
    domains: int = 0
    reason: str = ""


def read_instances(csv_path: str | Path, root: str | Path | None = None) -> list[Instance]:
    """Rows ``onnx,vnnlib,timeout`` (no header); paths relative to ``root`` (default: the
    CSV's folder).

    Raises:
        VerificationInputError: missing file or malformed row (names the line).
    """
    csv_path = require_file(csv_path, "instances file")
    base = Path(root) if root is not None else csv_path.parent
    out = []
    try:
        text = csv_path.read_text(encoding="utf-8-sig")  # Excel's "CSV UTF-8" starts with a BOM
    except UnicodeDecodeError as exc:  # was a traceback (a tester's latin-1 and binary files)
        raise VerificationInputError(
            f"instances file {str(csv_path)!r} is not UTF-8 text (byte {exc.start}); expected "
            "rows onnx,vnnlib,timeout") from None
    for lineno, row in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
        if not row or not "".join(row).strip():
            continue
        if len(row) != 3:
            raise VerificationInputError(
                f"{str(csv_path)!r} line {lineno}: {row!r}; expected onnx,vnnlib,timeout")
        timeout_s = _timeout(row[2], f"{str(csv_path)!r} line {lineno}")
        out.append(Instance(base / row[0].strip(), base / row[1].strip(), timeout_s))
    return out


def _timeout(text: str, where: str) -> float:
    """A row's timeout in seconds, refused unless a finite number > 0: the verifier turned
    inf and nan into a crash per row, and -1 into a silent "timeout" with exit status 0."""
    if exact.NUMBER.fullmatch(text.strip()) is None and text.strip().lower().lstrip(
            "+-") not in ("inf", "nan", "infinity"):  # float() reads "5_0" as 50
        raise VerificationInputError(f"{where}: timeout {text!r} is not a number")
    timeout_s = float(text)
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise VerificationInputError(
            f"{where}: timeout {text!r}; expected a finite number of seconds > 0")
    return timeout_s


def select(instances: list[Instance], pattern: str | None = None, limit: int | None = None,
           per_property: int | None = None) -> list[Instance]:
    """Instances whose ``net:prop`` name matches ``pattern`` (regex), at most ``per_property``
    of each property (evenly spread over that property's rows), then the first ``limit``."""
    try:
        regex = None if pattern is None else re.compile(pattern)
    except re.error as exc:
        raise VerificationInputError(f"filter {pattern!r} is not a regular expression: {exc}") \
            from None
    chosen = [i for i in instances if regex is None or regex.search(i.name)]
    if per_property is not None:
        groups: dict[str, list[Instance]] = {}
        for inst in chosen:
            groups.setdefault(inst.prop_name, []).append(inst)
        keep: set[int] = set()
        for rows in groups.values():
            count = min(per_property, len(rows))
            picks = np.linspace(0, len(rows) - 1, count).round().astype(int).tolist()
            keep.update(id(rows[k]) for k in (picks if count else []))
        chosen = [i for i in chosen if id(i) in keep]
    return chosen[:limit] if limit is not None else chosen


def run_ours(instance: Instance, timeout_s: float | None = None) -> InstanceResult:
    """Verify one instance with our branch and bound (errors become status "error")."""
    from meetup_ros.verification.bab import verify
    from meetup_ros.verification.network import load_network
    from meetup_ros.verification.spec import load_property

    budget = instance.timeout_s if timeout_s is None else timeout_s
    start = time.monotonic()
    try:  # .vnnlib or .yaml, as `meetup-ros verify` (YAML was read as VNN-LIB)
        result = verify(load_network(instance.onnx), load_property(instance.vnnlib), budget)
        status, domains = result.status, int(result.stats.get("domains", 0))
        reason = str(result.stats.get("reason", ""))
    except VerificationInputError as exc:
        status, domains, reason = "error", 0, str(exc)
    except Exception as exc:  # a crash on one instance is that instance's "error", not the run's
        logger.exception("verifier crashed on %s", instance.name)
        status, domains, reason = "error", 0, f"verifier crashed: {type(exc).__name__}: {exc}"
    return InstanceResult(instance.onnx.name, instance.vnnlib.name, instance.prop_name, "ours",
                          status, time.monotonic() - start, budget, domains, reason)


def run_all(instances: Iterable[Instance], runner: Callable[[Instance], InstanceResult],
            progress: bool = True, desc: str = "verify") -> list[InstanceResult]:
    """Run ``runner`` over instances with a tqdm bar."""
    from tqdm import tqdm

    items = list(instances)
    results = []
    bar = tqdm(items, desc=desc, disable=not progress, unit="inst")
    for inst in bar:
        res = runner(inst)
        results.append(res)
        bar.set_postfix_str(f"{inst.name} {res.status} {res.time_s:.1f}s")
    return results


def write_results_csv(results: list[InstanceResult], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(asdict(results[0]).keys()) if results else ["onnx"]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for r in results:
            writer.writerow(asdict(r))
    return path


def summarise(results: list[InstanceResult]) -> dict[str, dict[str, float]]:
    """Per property (and "all"): counts of sat/unsat/timeout/error, total and median time."""
    groups: dict[str, list[InstanceResult]] = {}
    for r in results:
        groups.setdefault(r.prop, []).append(r)
    groups["all"] = list(results)
    table = {}
    for prop, rs in groups.items():
        times = [r.time_s for r in rs]
        table[prop] = {
            "instances": len(rs),
            "sat": sum(r.status == "sat" for r in rs),
            "unsat": sum(r.status == "unsat" for r in rs),
            "timeout": sum(r.status == "timeout" for r in rs),
            "error": sum(r.status == "error" for r in rs),
            "total_s": float(sum(times)),
            "median_s": float(statistics.median(times)) if times else 0.0,
        }
    return table


def prop_key(name: str) -> tuple[int, str]:
    m = re.search(r"(\d+)$", name)
    return (int(m.group(1)) if m else 10**6, name)


def summary_markdown(results: list[InstanceResult]) -> str:
    """A markdown table by property."""
    table = summarise(results)
    lines = ["| property | instances | sat | unsat | timeout | error | total s | median s |",
             "|---|---|---|---|---|---|---|---|"]
    for prop in sorted(table, key=prop_key):
        t = table[prop]
        lines.append(f"| {prop} | {t['instances']:.0f} | {t['sat']:.0f} | {t['unsat']:.0f} | "
                     f"{t['timeout']:.0f} | {t['error']:.0f} | {t['total_s']:.2f} | "
                     f"{t['median_s']:.2f} |")
    return "\n".join(lines) + "\n"


def cactus_plot(results_by_tool: dict[str, list[InstanceResult]], path: str | Path) -> Path:
    """Solved instances (x) against time per instance, sorted (y, log), one line per tool."""
    from meetup_ros.evaluation import plots

    fig = plots.figure((6, 4))
    ax = fig.subplots()
    for tool, results in results_by_tool.items():
        times = np.sort([r.time_s for r in results if r.status in ("sat", "unsat")])
        ax.step(np.arange(1, len(times) + 1), np.maximum(times, 1e-3), where="post",
                label=f"{tool} ({len(times)} solved)")
    ax.set_xlabel("instances solved")
    ax.set_ylabel("time per instance [s]")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return plots.save(fig, path, dpi=120)
