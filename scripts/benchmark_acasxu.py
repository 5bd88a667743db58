#!/usr/bin/env python3
"""ACAS Xu side by side: meetup_ros's branch and bound and Marabou on the same instances.

Runs each selected instance through our verifier (in this process, one thread) and through
Marabou (``python -m maraboupy NET PROP --timeout T``, one worker, in a subprocess), one
after the other so both see the same machine load. Writes under ``--out``:
``results.csv`` (both tools), ``summary.md`` (per property: solved counts, total and median
time, our total time over Marabou's) and ``cactus.png``. Answers where both tools decided
and disagree are listed and make the script exit with status 1.

Example (a few instances per property, 60 s each):
    .venv/bin/python scripts/benchmark_acasxu.py --per-property 2 --timeout 60
The full benchmark is the default (186 instances x 116 s; hours on this machine).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from meetup_ros.verification import benchmark as bm  # noqa: E402

logger = logging.getLogger("benchmark_acasxu")


def run_marabou(instance: bm.Instance, timeout_s: float) -> bm.InstanceResult:
    """One Marabou run in a subprocess; status from its summary file."""
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary.txt"
        cmd = [sys.executable, "-m", "maraboupy", str(instance.onnx), str(instance.vnnlib),
               "--timeout", str(round(timeout_s)), "--verbosity", "0",
               "--num-workers", "1", "--summary-file", str(summary)]
        start = time.monotonic()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s + 30)
            elapsed = time.monotonic() - start
            text = summary.read_text().split() if summary.is_file() else []
            word = text[0].lower() if text else ""
            status = word if word in ("sat", "unsat", "timeout") else "error"
            reason = "" if status != "error" else (proc.stdout + proc.stderr)[-300:]
        except subprocess.TimeoutExpired:
            elapsed, status, reason = time.monotonic() - start, "timeout", "killed"
    return bm.InstanceResult(instance.onnx.name, instance.vnnlib.name, instance.prop_name,
                             "marabou", status, elapsed, timeout_s, 0, reason.strip())


def read_results(path: Path) -> dict[tuple[str, str, str], bm.InstanceResult]:
    """An earlier results.csv keyed by (tool, onnx, vnnlib)."""
    import csv

    out = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            r = bm.InstanceResult(row["onnx"], row["vnnlib"], row["prop"], row["tool"],
                                  row["status"], float(row["time_s"]), float(row["timeout_s"]),
                                  int(row["domains"]), row["reason"])
            out[r.tool, r.onnx, r.vnnlib] = r
    return out


def comparison_markdown(ours: list[bm.InstanceResult], theirs: list[bm.InstanceResult]) -> str:
    """Per-property table with both tools and the time ratio."""
    props = [*sorted({r.prop for r in ours + theirs}, key=bm.prop_key), "all"]
    lines = [
        "| property | instances | ours sat/unsat/timeout | ours total s | ours median s "
        "| Marabou sat/unsat/timeout | Marabou total s | Marabou median s "
        "| total ratio ours/Marabou (instances both ran) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for prop in props:
        a = [r for r in ours if prop in ("all", r.prop)]
        b = [r for r in theirs if prop in ("all", r.prop)]

        def counts(rs: list[bm.InstanceResult]) -> str:
            return "/".join(str(sum(r.status == s for r in rs))
                            for s in ("sat", "unsat", "timeout")) + (
                f" (+{sum(r.status == 'error' for r in rs)} error)"
                if any(r.status == "error" for r in rs) else "")

        def total(rs: list[bm.InstanceResult]) -> float:
            return sum(r.time_s for r in rs)

        def median(rs: list[bm.InstanceResult]) -> float:
            return statistics.median([r.time_s for r in rs]) if rs else 0.0

        # The ratio over the instances both tools ran (a run cut short has fewer of one).
        both = {(r.onnx, r.vnnlib) for r in a} & {(r.onnx, r.vnnlib) for r in b}
        a2 = [r for r in a if (r.onnx, r.vnnlib) in both]
        b2 = [r for r in b if (r.onnx, r.vnnlib) in both]
        ratio = total(a2) / total(b2) if b2 and total(b2) > 0 else float("nan")
        lines.append(
            f"| {prop} | {len(a)} | {counts(a)} | {total(a):.2f} | {median(a):.2f} | "
            f"{counts(b)} | {total(b):.2f} | {median(b):.2f} | {ratio:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=Path,
                        default=REPO.parent / "shared" / "data" / "acasxu" / "instances.csv")
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=REPO / "out" / "benchmark_acasxu")
    parser.add_argument("--per-property", type=int, default=None,
                        help="at most N instances per property, spread over the networks")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--filter", default=None, help="regex on 'network:property'")
    parser.add_argument("--timeout", type=float, default=None,
                        help="per-instance timeout override (s), for both tools")
    parser.add_argument("--tools", default="ours,marabou",
                        help="comma list of tools to run now (ours, marabou)")
    parser.add_argument("--reuse", type=Path, default=None,
                        help="results.csv of an earlier run: take the tools not run now from it")
    parser.add_argument("--resume", action="store_true",
                        help="keep the results already in OUT/results.csv (a run cut short) "
                             "and run only the instances missing there")
    args = parser.parse_args(argv)
    tools = set(args.tools.split(",")) - {""}
    if not tools <= {"ours", "marabou", "none"}:
        parser.error(f"--tools {args.tools!r}: expected a comma list of ours, marabou (or none)")
    if args.timeout is not None and not (0 < args.timeout < float("inf")):
        parser.error(f"--timeout {args.timeout!r}: expected a finite number of seconds > 0")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    import torch

    torch.set_num_threads(1)
    from meetup_ros.verification import VerificationInputError

    try:
        instances = bm.select(bm.read_instances(args.instances, args.root), args.filter,
                              args.limit, args.per_property)
    except VerificationInputError as exc:
        parser.error(str(exc))
    logger.info("%d instances, tools %s, timeout %s", len(instances), sorted(tools),
                args.timeout or "from the CSV")
    ours: list[bm.InstanceResult] = []
    theirs: list[bm.InstanceResult] = []
    earlier = read_results(args.reuse) if args.reuse is not None else {}
    done = {}
    if args.resume and (args.out / "results.csv").is_file():
        done = read_results(args.out / "results.csv")
        logger.info("resuming: %d results kept from %s", len(done), args.out / "results.csv")
    # Import and warm up our verifier once so the first instance does not pay for it.
    from tqdm import tqdm

    from meetup_ros.verification import bab, falsify, vnnlib  # noqa: F401

    bar = tqdm(instances, unit="inst")
    for inst in bar:
        budget = inst.timeout_s if args.timeout is None else args.timeout
        if ("ours", inst.onnx.name, inst.vnnlib.name) in done:
            ours.append(done["ours", inst.onnx.name, inst.vnnlib.name])
        elif "ours" in tools:
            ours.append(bm.run_ours(inst, budget))
        elif ("ours", inst.onnx.name, inst.vnnlib.name) in earlier:
            ours.append(earlier["ours", inst.onnx.name, inst.vnnlib.name])
        if ("marabou", inst.onnx.name, inst.vnnlib.name) in done:
            theirs.append(done["marabou", inst.onnx.name, inst.vnnlib.name])
        elif "marabou" in tools:
            theirs.append(run_marabou(inst, budget))
        elif ("marabou", inst.onnx.name, inst.vnnlib.name) in earlier:
            theirs.append(earlier["marabou", inst.onnx.name, inst.vnnlib.name])
        bar.set_postfix_str(
            f"{inst.name} ours={ours[-1].status if ours else '-'} "
            f"marabou={theirs[-1].status if theirs else '-'}")
        # Rewrite the outputs after every instance so a cut-short run still leaves them.
        bm.write_results_csv(ours + theirs, args.out / "results.csv")
    table = comparison_markdown(ours, theirs)
    by_instance = {(b.onnx, b.vnnlib): b for b in theirs}
    disagreements = [
        f"{a.onnx} {a.vnnlib}: ours {a.status}, Marabou {b.status}"
        for a in ours
        if (b := by_instance.get((a.onnx, a.vnnlib))) is not None
        and {a.status, b.status} == {"sat", "unsat"}
    ]
    text = table + ("\nDISAGREEMENTS:\n" + "\n".join(disagreements) + "\n"
                    if disagreements else "\nNo disagreements where both tools decided.\n")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.md").write_text(text)
    bm.cactus_plot({"meetup_ros": ours, "Marabou": theirs}, args.out / "cactus.png")
    print(text, end="")
    return 1 if disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
