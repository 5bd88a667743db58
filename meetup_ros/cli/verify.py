"""``meetup-ros verify`` and ``meetup-ros benchmark``: the verifier on files, competition style."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from meetup_ros.cli import CommandError, check_out_dir

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "verify", help="verify a network against a property (VNN-COMP result format)",
        description="Prints (and writes with --result) 'sat' with the counterexample, "
                    "'unsat', 'timeout' or 'error'. Exit status: 0 unsat (the property "
                    "holds), 1 sat (a counterexample), 3 timeout, 2 error, so that a "
                    "script or CI gate can act on it.")
    p.add_argument("network", type=Path, help=".onnx or .nnet file")
    p.add_argument("property", type=Path, help=".vnnlib or .yaml property (unsafe set)")
    p.add_argument("--timeout", type=float, required=True, help="seconds")
    p.add_argument("--result", type=Path, default=None,
                   help="write the result here too (missing folders are created)")
    p.set_defaults(func=_verify)

    b = subparsers.add_parser(
        "benchmark", help="run a benchmark instances CSV (onnx,vnnlib,timeout rows)")
    b.add_argument("instances", type=Path, help="instances CSV")
    b.add_argument("--root", type=Path, default=None, help="folder of the files (CSV's folder)")
    b.add_argument("--out", type=Path, default=Path("out/benchmark"), help="output folder")
    b.add_argument("--limit", type=int, default=None, help="run at most N instances")
    b.add_argument("--filter", default=None, help="regex on 'network:property' names")
    b.add_argument("--per-property", type=int, default=None, help="at most N per property")
    b.add_argument("--timeout", type=float, default=None, help="override every timeout (s)")
    b.set_defaults(func=_benchmark)


def format_result(status: str, x=None, y=None) -> str:
    """VNN-COMP result text: the status line, and for sat ``((X_0 v) ... (Y_0 v) ...)``."""
    if status != "sat" or x is None or y is None:
        return status + "\n"
    pairs = [f"(X_{i} {float(v)!r})" for i, v in enumerate(x)]
    pairs += [f"(Y_{j} {float(v)!r})" for j, v in enumerate(y)]
    return "sat\n(" + "\n ".join(pairs) + ")\n"


def _check_timeout(timeout_s: float) -> None:
    import math

    if not (timeout_s > 0 and math.isfinite(timeout_s)):
        raise CommandError(f"--timeout {timeout_s!r}; expected a finite number of seconds > 0")


def _check_result_path(path: Path) -> None:
    """Make --result's folders and check the file can be written, before a long run."""
    if path.is_dir():
        raise CommandError(f"--result {str(path)!r} is a folder; expected a file path")
    for folder in path.parents:
        if folder.exists() and not folder.is_dir():
            raise CommandError(f"--result {str(path)!r}: {str(folder)!r} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a"):
            pass
    except OSError as exc:
        raise CommandError(f"--result {str(path)!r} cannot be written: "
                           f"{exc.strerror or exc}") from exc


def _verify(args: argparse.Namespace) -> int:
    import torch

    from meetup_ros.verification import VerificationInputError
    from meetup_ros.verification.bab import verify
    from meetup_ros.verification.network import load_network
    from meetup_ros.verification.spec import load_property

    torch.set_num_threads(1)
    # A bad option gives "error" on stdout, and in --result where that can be written, as a
    # bad file does: a bad --timeout printed only the stderr line (a tester's).
    result_writable = False
    try:
        if args.result is not None:
            _check_result_path(args.result)
            result_writable = True
        _check_timeout(args.timeout)
    except CommandError:
        print("error")
        if result_writable:
            args.result.write_text("error\n")
        raise
    try:
        network = load_network(args.network)
        prop = load_property(args.property)
        result = verify(network, prop, args.timeout)
        text = format_result(result.status, result.x, result.y)
        error = None
    except VerificationInputError as exc:
        text, error = "error\n", str(exc)
    except Exception as exc:  # a bug must still give the competition's "error" line
        logger.debug("verify failed", exc_info=True)
        text, error = "error\n", f"internal error: {type(exc).__name__}: {exc}"
    print(text, end="")
    if error is None and result.status == "timeout":  # say why nothing was decided
        print(f"undecided: {result.stats.get('reason') or 'deadline'}", file=sys.stderr)
    if args.result is not None:
        try:
            args.result.write_text(text)
        except OSError as exc:  # exit 1 would read as "sat" to a gate on the status
            raise CommandError(f"--result {str(args.result)!r} could not be written: "
                               f"{exc.strerror or exc}") from exc
    if error is not None:
        raise CommandError(error)
    # Only a proof is success: a gate on the exit status must not pass a counterexample.
    return {"unsat": 0, "sat": 1}.get(result.status, 3)


def _benchmark(args: argparse.Namespace) -> int:
    import torch

    from meetup_ros.verification import VerificationInputError
    from meetup_ros.verification import benchmark as bm

    torch.set_num_threads(1)
    if args.timeout is not None:
        _check_timeout(args.timeout)
    for flag, value in (("--limit", args.limit), ("--per-property", args.per_property)):
        if value is not None and value < 1:  # -1 dropped the last instance (a slice)
            raise CommandError(f"{flag} {value}; expected an integer >= 1")
    out: Path = args.out
    # found only after every instance had run (a file, or a path under one: a tester's)
    check_out_dir(out)
    try:
        instances = bm.select(bm.read_instances(args.instances, args.root), args.filter,
                              args.limit, args.per_property)
    except VerificationInputError as exc:
        raise CommandError(str(exc)) from exc
    if not instances:
        what = "matches " + repr(args.filter) if args.filter else "is listed (an empty file?)"
        raise CommandError(f"no instance in {str(args.instances)!r} {what}")
    results = bm.run_all(instances, lambda inst: bm.run_ours(inst, args.timeout))
    csv_path = bm.write_results_csv(results, out / "results.csv")
    table = bm.summary_markdown(results)
    (out / "summary.md").write_text(table)
    png = bm.cactus_plot({"meetup_ros": results}, out / "cactus.png")
    print(table, end="")
    logger.info("wrote %s, %s, %s", csv_path, out / "summary.md", png)
    errors = [r for r in results if r.status == "error"]
    for r in errors:
        logger.error("%s %s: error: %s", r.onnx, r.prop, r.reason)
    # Every row is in the files; but a gate on the exit status must see that some instance
    # could not be run at all (a missing or malformed file), which is not a timeout.
    return 2 if errors else 0
