"""``meetup-ros study optimizers|batch-size|iteration-cost``: the DFW studies.

Each writes ``OUT/results.csv``, ``OUT/results.md`` and a PNG plot. Defaults finish in a few
minutes on 2 cores with one torch thread; larger settings by flags.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from meetup_ros.cli import CommandError, check_out_dir, set_torch_threads

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add ``study`` to the ``meetup-ros`` parser."""
    p = subparsers.add_parser("study", help="DFW studies: optimizers, batch-size, iteration-cost")
    p.add_argument("study", choices=("optimizers", "batch-size", "iteration-cost"))
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--mnist-dir", default="../shared/data/mnist_t10k",
                   help="folder with the MNIST t10k IDX files")
    p.add_argument("--datasets", nargs="+", default=["mnist", "digits"],
                   choices=("mnist", "digits"), help="optimizers study")
    p.add_argument("--dataset", default="mnist", choices=("mnist", "digits"),
                   help="batch-size study")
    p.add_argument("--seeds", type=int, default=None,
                   help="seeds per setting (default 3 optimizers, 1 batch-size)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs per run (default 12 optimizers, 10 batch-size)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="optimizers study: batch (64); iteration-cost: batch (256)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64, 256, 1024])
    p.add_argument("--hidden", type=int, nargs="+", default=[128], help="MLP hidden sizes")
    p.add_argument("--repetitions", type=int, default=15, help="iteration-cost")
    p.add_argument("--iterations", type=int, default=10, help="iteration-cost, per repetition")
    p.add_argument("--device", default="cpu", help="iteration-cost device")
    p.add_argument("--threads", type=int, default=1, help="torch threads (shared CPU: 1)")
    p.set_defaults(func=_study)


def _or(value: int | None, default: int) -> int:
    """``value`` unless it was not given (``value or default`` also replaced a 0)."""
    return default if value is None else value


def _study(args: argparse.Namespace) -> int:
    from meetup_ros import paths
    from meetup_ros.optim import studies

    set_torch_threads(args.threads)
    out = Path(args.out)
    try:
        # every number and the device are checked before the out folder or any data is
        # touched: 0 was a traceback mid-run or (`args.x or default`) silently the default
        for flag, value in (("--seeds", args.seeds), ("--epochs", args.epochs),
                            ("--batch-size", args.batch_size),
                            ("--batch-sizes", args.batch_sizes), ("--hidden", args.hidden),
                            ("--repetitions", args.repetitions),
                            ("--iterations", args.iterations)):
            if value is not None:  # None: the study's own default
                studies.check_positive(flag, value)
        if args.study == "iteration-cost":
            studies.check_device(args.device, "--device")
        check_out_dir(out)
        if args.study == "optimizers":
            rows = studies.optimizer_study(
                out, datasets=args.datasets, mnist_dir=paths.shared_data_path(args.mnist_dir),
                seeds=range(_or(args.seeds, 3)), epochs=_or(args.epochs, 12),
                batch_size=_or(args.batch_size, 64), hidden=tuple(args.hidden))
        elif args.study == "batch-size":
            rows = studies.batch_size_study(
                out, dataset=args.dataset, mnist_dir=paths.shared_data_path(args.mnist_dir),
                batch_sizes=args.batch_sizes, seeds=range(_or(args.seeds, 1)),
                epochs=_or(args.epochs, 10), hidden=tuple(args.hidden))
        else:
            rows = studies.iteration_cost_study(
                out, batch_size=_or(args.batch_size, 256), repetitions=args.repetitions,
                iterations=args.iterations, device=args.device)
    except studies.StudyError as exc:
        raise CommandError(str(exc)) from exc
    print((out / "results.md").read_text())
    logger.info("study %s: %d rows in %s", args.study, len(rows), out)
    return 0
