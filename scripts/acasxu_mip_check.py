#!/usr/bin/env python3
"""Cross-check a benchmark run's answers against the exact MIP (HiGHS), where it decides.

For each instance of ``results.csv`` (our tool's rows), :func:`mip.mip_verify` runs with a
per-disjunct time limit; where the MIP answers ``sat`` (a confirmed point) or ``unsat``, that
answer must equal ours. Writes ``mip_check.csv`` and logs the counts; exits 1 on any
disagreement. ``--shard i/n`` runs every n-th instance (two shards use both cores).

Example:
    .venv/bin/python scripts/acasxu_mip_check.py out/bench/results.csv --limit-s 5 --shard 0/2
"""

from __future__ import annotations

import argparse
import csv
import logging
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
logger = logging.getLogger("acasxu_mip_check")
sys.path.insert(0, str(REPO))

from meetup_ros.verification.mip import mip_verify  # noqa: E402
from meetup_ros.verification.network import load_network  # noqa: E402
from meetup_ros.verification.vnnlib import load_vnnlib  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="results.csv of benchmark_acasxu.py")
    parser.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "acasxu")
    parser.add_argument("--limit-s", type=float, default=5.0, help="MIP time per disjunct")
    parser.add_argument("--shard", default="0/1", help="i/n: every n-th instance from i")
    parser.add_argument("--filter", default=None, help="regex on 'onnx:vnnlib'")
    parser.add_argument("--out", type=Path, default=None,
                        help="CSV to write (default: mip_check_SHARD.csv beside results)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    i, n = (int(v) for v in args.shard.split("/"))
    import torch

    torch.set_num_threads(1)
    with args.results.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["tool"] == "ours" and (
            args.filter is None or re.search(args.filter, f"{r['onnx']}:{r['vnnlib']}"))][i::n]
    out = args.out or args.results.with_name(f"mip_check_{i}of{n}.csv")
    decided = agree = 0
    disagreements = []
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["onnx", "vnnlib", "ours", "mip", "mip_s"])
        for row in rows:
            net = load_network(args.root / row["onnx"])
            prop = load_vnnlib(args.root / row["vnnlib"])
            start = time.monotonic()
            answer = mip_verify(net, prop, time_limit_s=args.limit_s)
            elapsed = time.monotonic() - start
            writer.writerow([row["onnx"], row["vnnlib"], row["status"], answer,
                             f"{elapsed:.2f}"])
            f.flush()
            if answer in ("sat", "unsat"):
                decided += 1
                if answer == row["status"]:
                    agree += 1
                else:
                    disagreements.append(f"{row['onnx']} {row['vnnlib']}: ours "
                                         f"{row['status']}, MIP {answer}")
            logger.info("%s %s: ours %s, MIP %s (%.1f s)", row["onnx"], row["vnnlib"],
                        row["status"], answer, elapsed)
    logger.info("%d instances, MIP decided %d, agreeing %d; disagreements: %s", len(rows),
                decided, agree, disagreements or "none")
    return 1 if disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
