"""SLAM commands: benchmark-slam (learned step vs Gauss-Newton vs LM on held-out pairs)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from meetup_ros.cli import CommandError, check_out_dir, set_torch_threads


def register(subparsers: Any) -> None:
    """Add the SLAM subcommands to the ``meetup-ros`` parser."""
    p = subparsers.add_parser(
        "benchmark-slam",
        help="learned optimiser vs Gauss-Newton vs LM on held-out two-view pairs; depth metrics",
    )
    p.add_argument("--bag", default="data/euroc_v1_01_easy_sample",
                   help="stereo EuRoC rosbag2 folder (data/ if relative and not found)")
    p.add_argument("--data-root", default="../shared/data",
                   help="folder with the KITTI and TUM sequences (pose pairs)")
    p.add_argument("--out", default="out/slam", help="folder for benchmark_slam.json and plots")
    p.add_argument("--depth-weights", default="models/depth_code.pt",
                   help="depth-code weights (models/ if relative and not found)")
    p.add_argument("--optimizer-weights", default="models/slam_optimizer.pt",
                   help="learned-step weights (models/ if relative and not found)")
    p.add_argument("--max-iterations", type=int, default=20, help="per solver and pair")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.set_defaults(func=_benchmark)


def _weights(name: str, command: str) -> Path:
    from meetup_ros import paths

    path = paths.model_path(name)
    if not path.is_file():
        raise CommandError(f"weights {name!r} not found (looked at {str(path)!r}); "
                           f"rebuild them with `meetup-ros train {command}`")
    return path


def _benchmark(args: argparse.Namespace) -> int:

    from meetup_ros import paths
    from meetup_ros.bags import BagError
    from meetup_ros.evaluation.datasets import DatasetError
    from meetup_ros.slam import SlamError
    from meetup_ros.slam.benchmark import BenchmarkConfig, run_benchmark

    set_torch_threads(args.threads)
    check_out_dir(Path(args.out))
    if args.max_iterations < 1:
        raise CommandError(f"--max-iterations {args.max_iterations!r} must be >= 1")
    data_root = paths.shared_data_path(args.data_root)
    if not data_root.is_dir():
        raise CommandError(f"--data-root {str(data_root)!r} is not a folder")
    try:
        report = run_benchmark(
            paths.data_path(args.bag), data_root, Path(args.out),
            _weights(args.depth_weights, "depth"), _weights(args.optimizer_weights, "optimizer"),
            BenchmarkConfig(max_iterations=args.max_iterations),
        )
    except (SlamError, BagError, DatasetError) as exc:
        raise CommandError(str(exc)) from None
    summary = {
        key: {k: v for k, v in value.items() if k not in ("curves", "per_pair")}
        if isinstance(value, dict) else value
        for key, value in report.items()
    }
    from meetup_ros.evaluation.jsonsafe import finite_json

    print(json.dumps(finite_json(summary), indent=1))
    default = BenchmarkConfig().max_iterations
    # each group records its max_iterations; the ratios at another cap are not the README's
    cap = ("" if args.max_iterations == default else
           f"; at --max-iterations {args.max_iterations}, not the default {default}: the "
           "iteration ratios are not comparable to those in models/")
    print(f"wrote {Path(args.out) / 'benchmark_slam.json'} and slam_report.json (the figures "
          f"`make demo` copies from models/){cap}")
    return 0
