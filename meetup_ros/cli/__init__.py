"""The ``meetup-ros`` command: offline work (import, replay, train, verify, evaluate, demo).

Each module in ``COMMAND_MODULES`` owns a group of subcommands and exposes
``register(subparsers)``; it parses arguments and calls a core. Heavy imports (torch,
rclpy) happen inside the handlers so that ``meetup-ros --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COMMAND_MODULES = (
    "meetup_ros.cli.bags",  # import-euroc, replay, bag-info
    "meetup_ros.cli.train",  # train vio|depth|optimizer|controller
    "meetup_ros.cli.verify",  # verify, benchmark
    "meetup_ros.cli.odometry",  # evaluate-vio, evaluate-visual
    "meetup_ros.cli.slam",  # benchmark-slam
    "meetup_ros.cli.studies",  # dfw studies
    "meetup_ros.cli.run",  # run (nodes from YAML without ros2 launch), demo
)


class CommandError(Exception):
    """A command failed for a reason the user can fix; printed without a traceback."""


def set_torch_threads(threads: int | None) -> None:
    """``--threads``: torch's CPU threads (None: torch's default). Below 1 is refused here;
    torch would raise a RuntimeError traceback."""
    if threads is None:
        return
    if threads < 1:
        raise CommandError(f"--threads {threads!r}: expected an integer >= 1")
    import torch

    torch.set_num_threads(threads)


def check_out_dir(out_dir: Path) -> None:
    """Refuse an ``--out`` that cannot be written before any data is read: an existing file,
    or a folder (or the nearest existing folder above it) this process may not write to.
    Found at the first write, they were a FileExistsError or PermissionError traceback after
    the data loading or the first epoch. Nothing is created here."""
    if out_dir.exists() and not out_dir.is_dir():
        raise CommandError(f"--out {str(out_dir)!r}: exists and is not a folder")
    if out_dir.is_symlink() and not out_dir.exists():
        # exists() follows the link: a dangling one passed, and mkdir failed after the work
        raise CommandError(f"--out {str(out_dir)!r}: a symbolic link to "
                           f"{str(out_dir.readlink())!r}, which does not exist")
    existing = out_dir
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise CommandError(f"--out {str(out_dir)!r}: {str(existing)!r} is not a folder")
    # os.access asks the kernel, so a read-only mount or an immutable folder is refused even
    # for root; creating the folder needs write access to the existing one above it
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == out_dir else f" (its nearest existing folder {str(existing)!r})"
        raise CommandError(f"--out {str(out_dir)!r}: cannot write there{where}: expected a "
                           "folder this user may write to")


class _NoAbbrevParser(argparse.ArgumentParser):
    """A subcommand's parser that takes no abbreviated flags."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meetup-ros", description="meetup_ros offline tools and pip-only launcher.",
        allow_abbrev=False,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    # No abbreviated flags: "--rat 2" running at rate 2 hides a typo.
    subparsers = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND",
        parser_class=_NoAbbrevParser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # a command group not built yet in this checkout
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"meetup-ros {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
