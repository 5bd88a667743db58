"""Bag commands: import-euroc, replay, record, bag-info."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from meetup_ros.cli import CommandError

logger = logging.getLogger(__name__)

DEFAULT_WAIT_TIMEOUT_S = 20.0  # replay --wait-timeout


def register(subparsers: Any) -> None:
    """Add the bag subcommands to the ``meetup-ros`` parser."""
    p = subparsers.add_parser(
        "import-euroc", help="write an EuRoC ASL folder as a rosbag2 (MCAP by default)"
    )
    p.add_argument("asl_dir", metavar="ASL_DIR", help="folder holding mav0/")
    p.add_argument("out_bag", metavar="OUT_BAG", help="rosbag2 folder to create")
    p.add_argument("--start-ns", type=int, default=None, help="first image stamp (ns)")
    p.add_argument("--end-ns", type=int, default=None, help="last image stamp (ns)")
    p.add_argument(
        "--imu-margin-s", type=float, default=1.0,
        help="IMU and ground truth extend this far either side of the image window (s)",
    )
    p.add_argument("--downscale", type=int, default=1, help="integer image reduction factor")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    p.add_argument(
        "--no-compress", action="store_true", help="MCAP without zstd chunk compression"
    )
    p.set_defaults(func=_import_euroc)

    p = subparsers.add_parser(
        "replay", help="publish a bag over DDS at its recorded timing, with /clock"
    )
    p.add_argument("bag", metavar="BAG", nargs="+", help="rosbag2 folder(s)")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    p.add_argument("--loop", action="store_true", help="start again at the end (stamps go back)")
    p.add_argument("--topics", nargs="+", default=None, help="only these topics")
    p.add_argument("--no-clock", action="store_true", help="do not publish /clock")
    p.add_argument(
        "--wait-for-subscribers", type=int, default=0, metavar="N",
        help="before the first message, wait for N matched subscriptions on every topic "
             "played (and /clock); 0 = start after a fixed 0.5 s",
    )
    p.add_argument(
        "--wait-timeout", type=float, default=None, metavar="S",
        help="with --wait-for-subscribers: give up waiting after S seconds (default 20), "
             "warn and play",
    )
    p.add_argument(
        "--wait-fail", action="store_true",
        help="with --wait-for-subscribers: fail (exit 1) on a wait timeout instead",
    )
    p.set_defaults(func=_replay)

    p = subparsers.add_parser("record", help="record topics over DDS into an MCAP rosbag2")
    p.add_argument("out_bag", metavar="OUT_BAG", help="rosbag2 folder to create")
    p.add_argument("--topics", nargs="+", required=True, help="topics to record")
    p.add_argument("--duration", type=float, default=None,
                   help="stop after S seconds (the wait for publishers included)")
    p.add_argument(
        "--type", action="append", default=[], metavar="TOPIC=TYPE", dest="types",
        help="message type of a topic, e.g. /imu0=sensor_msgs/msg/Imu (repeatable); without "
             "it the type is taken from a publisher seen within 5 s (or --duration)",
    )
    p.set_defaults(func=_record)

    p = subparsers.add_parser("bag-info", help="topics, types, counts and span of a bag")
    p.add_argument("bag", metavar="BAG", nargs="+", help="rosbag2 folder(s)")
    p.set_defaults(func=_bag_info)


def _import_euroc(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from meetup_ros.bags import BagError
    from meetup_ros.bags.importer import import_euroc

    bars: list[Any] = []  # opened at the first message: a refused option shows no bar

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(unit="msg", desc="import-euroc", dynamic_ncols=True, total=total))
        bar = bars[0]
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    try:
        summary = import_euroc(
            args.asl_dir, args.out_bag, start_ns=args.start_ns, end_ns=args.end_ns,
            imu_margin_s=args.imu_margin_s, downscale=args.downscale, storage=args.storage,
            compress=not args.no_compress, progress=progress,
        )
    except BagError as exc:
        raise CommandError(str(exc)) from None
    finally:
        for bar in bars:
            bar.close()
    print(f"wrote {summary.out_bag} ({summary.storage}, {summary.size_bytes / 1e6:.1f} MB, "
          f"images {summary.width}x{summary.height}, "
          f"{(summary.end_ns - summary.start_ns) / 1e9:.2f} s of images)")
    for topic, count in summary.counts.items():
        print(f"  {topic}: {count}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from meetup_ros.bags import BagError
    from meetup_ros.nodes.bag_replay_node import run_replay

    if not args.rate > 0:
        raise CommandError(f"--rate {args.rate!r}: expected a value > 0")
    if args.wait_for_subscribers < 0:
        raise CommandError(
            f"--wait-for-subscribers {args.wait_for_subscribers!r}: expected a value >= 0"
        )
    _check_wait_options(args)
    try:
        report = run_replay(
            args.bag, rate=args.rate, loop=args.loop, topics=args.topics,
            publish_clock=not args.no_clock, wait_for_subscribers=args.wait_for_subscribers,
            wait_timeout_s=DEFAULT_WAIT_TIMEOUT_S if args.wait_timeout is None
            else args.wait_timeout, wait_fail=args.wait_fail,
        )
    except BagError as exc:
        raise CommandError(str(exc)) from None
    if not report.summary_logged:  # interrupted or failed before the end of playback
        print(report.summary())
    return 1 if report.error else 0


def _check_wait_options(args: argparse.Namespace) -> None:
    """Refuse a bad --wait-timeout, and --wait-timeout/--wait-fail without a wait: taken and
    ignored, they read as if the replay would fail on unmatched topics (a tester's finding)."""
    given = [name for name, on in (("--wait-timeout", args.wait_timeout is not None),
                                   ("--wait-fail", args.wait_fail)) if on]
    if given and args.wait_for_subscribers == 0:
        raise CommandError(f"{' and '.join(given)}: only with --wait-for-subscribers N > 0 "
                           "(without it the replay does not wait); add it or drop them")
    if args.wait_timeout is not None and not args.wait_timeout > 0:
        raise CommandError(f"--wait-timeout {args.wait_timeout!r}: expected a value > 0")


def _record(args: argparse.Namespace) -> int:
    from meetup_ros.bags import BagError
    from meetup_ros.nodes.bag_recorder import run_recorder

    if args.duration is not None and not args.duration > 0:
        raise CommandError(f"--duration {args.duration!r}: expected a value > 0")
    msgtypes = parse_types(args.types, args.topics)
    try:
        counts = run_recorder(args.out_bag, args.topics, duration_s=args.duration,
                              msgtypes=msgtypes)
    except BagError as exc:
        raise CommandError(str(exc)) from None
    print(f"wrote {args.out_bag}: " + ", ".join(f"{t} {n}" for t, n in counts.items()))
    return _record_outcome(args.out_bag, counts)


def _record_outcome(out_bag: str, counts: dict[str, int]) -> int:
    """Exit 1, naming the topics, when no message arrived at all: a misspelt topic with its
    --type recorded an empty bag and exited 0 without a word (a tester's finding). Topics that
    got nothing beside others that did are a warning."""
    silent = [t for t, n in counts.items() if n == 0]
    if silent and len(silent) == len(counts):
        print(f"meetup-ros record: error: no message arrived on {silent!r}: the bag {out_bag!r} "
              "holds none (a misspelt topic, or no publisher?)", file=sys.stderr)
        return 1
    if silent:
        logger.warning("no message arrived on %r; the bag holds none of them", silent)
    return 0


def parse_types(items: list[str], topics: list[str]) -> dict[str, str]:
    """``--type TOPIC=pkg/msg/Name`` items -> {topic: type}; CommandError on a bad item."""
    types: dict[str, str] = {}
    for item in items:
        topic, sep, msgtype = (part.strip() for part in item.partition("="))
        if not sep or not topic or msgtype.count("/") != 2 or not all(msgtype.split("/")):
            raise CommandError(f"--type {item!r}: expected TOPIC=pkg/msg/Name, e.g. "
                               "/imu0=sensor_msgs/msg/Imu")
        if topic not in topics:
            raise CommandError(f"--type {item!r}: {topic!r} is not among --topics {topics!r}")
        if topic in types and types[topic] != msgtype:
            raise CommandError(f"--type gives {topic!r} twice ({types[topic]!r}, {msgtype!r})")
        types[topic] = msgtype
    return types


def _bag_info(args: argparse.Namespace) -> int:
    from meetup_ros.bags import BagError
    from meetup_ros.bags.reader import bag_info

    try:
        info = bag_info(args.bag)
    except BagError as exc:
        raise CommandError(str(exc)) from None
    print(f"bag:      {', '.join(args.bag)}")
    print(f"storage:  {info['storage']}   size: {info['size_bytes'] / 1e6:.1f} MB")
    print(f"span:     {info['start_ns']} .. {info['end_ns']} ns "
          f"({info['duration_s']:.3f} s), {info['message_count']} messages")
    width = max((len(t) for t in info["topics"]), default=5)
    for topic, (msgtype, count) in sorted(info["topics"].items()):
        print(f"  {topic:<{width}}  {count:>7}  {msgtype}")
    return 0
