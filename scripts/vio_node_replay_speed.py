#!/usr/bin/env python3
"""How fast a bag can be replayed through vio_node alone: rates side by side, one run.

vio_node runs in its own process with the pipeline's parameters (as ``meetup-ros run``
starts it); the bundled bag's /imu0 and /cam0/image_raw are replayed from another process
at each rate; a listener in this process takes each frame and each /odom message as they
arrive, so the lag of an estimate behind its frame is measured on one clock, transport and
queueing included (the node's own ``frame`` latency counts only its processing). A rate is
kept up with when every frame gets its odometry, no IMU sample is dropped, and the lag does
not grow over the bag: the median over its last 20 frames stays below ``--max-lag-ms`` (a
node that falls behind drains its queue after the replay, with lags growing frame by frame).

Prints one line per rate and writes ``--out`` JSON. Needs loopback DDS only:

    ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID=57 \\
        .venv/bin/python scripts/vio_node_replay_speed.py --rates 1 5 7 10

The whole pipeline (four nodes, 2 cores) is slower: ``meetup-ros demo --rate R``.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import Image, Imu  # noqa: E402

from meetup_ros import paths  # noqa: E402
from meetup_ros.cli.run import NodeProcesses  # noqa: E402
from meetup_ros.ros.convert import stamp_to_ns  # noqa: E402
from meetup_ros.ros.node_tools import reliable_qos  # noqa: E402

BAG = REPO / "data" / "euroc_v1_01_easy_sample"
logger = logging.getLogger("vio_node_replay_speed")


class Listener:
    """Arrival times (time.monotonic) of frames and odometry, by stamp; vio_node's counters."""

    def __init__(self, context: object) -> None:
        self.node = rclpy.create_node("replay_speed_listener", context=context)
        self.lock = threading.Lock()
        self.frames: dict[int, float] = {}
        self.odom: dict[int, float] = {}
        self.counters: dict[str, int] = {}
        self.node.create_subscription(Image, "/cam0/image_raw", self._on_frame, reliable_qos(100))
        self.node.create_subscription(Odometry, "/odom", self._on_odom, reliable_qos(100))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        # Subscribed only so that the replay's wait (two matched subscriptions on each topic:
        # vio_node and this listener) covers this listener too; raw bytes, not deserialised,
        # so that it costs the 2 cores next to nothing at 2 kHz.
        self.node.create_subscription(Imu, "/imu0", lambda _: None, reliable_qos(1000),
                                      raw=True)

    def _on_frame(self, msg: Image) -> None:
        with self.lock:
            self.frames[stamp_to_ns(msg.header.stamp)] = time.monotonic()

    def _on_odom(self, msg: Odometry) -> None:
        with self.lock:
            self.odom[stamp_to_ns(msg.header.stamp)] = time.monotonic()

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith("vio_node"):
                with self.lock:
                    for kv in status.values:
                        if kv.value.lstrip("-").isdigit():
                            self.counters[kv.key] = int(kv.value)

    def clear(self) -> None:
        with self.lock:
            self.frames.clear()
            self.odom.clear()


def replay(rate: float) -> str:
    cmd = [sys.executable, "-m", "meetup_ros.cli", "replay", str(BAG), "--rate", str(rate),
           "--topics", "/imu0", "/cam0/image_raw", "--no-clock",
           "--wait-for-subscribers", "2", "--wait-fail"]  # vio_node and the listener
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise SystemExit(f"replay at rate {rate} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout + out.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[1.0, 5.0, 7.0, 10.0])
    parser.add_argument("--params", default="pipeline.yaml", help="under config/ if relative")
    parser.add_argument("--max-lag-ms", type=float, default=50.0,
                        help="a rate is kept up with if the odometry of the bag's last 20 "
                             "frames lags less (median)")
    parser.add_argument("--out", type=Path, default=Path("out/vio_node_replay_speed.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    nodes = NodeProcesses(paths.config_path(args.params), ["vio_node"], log_dir=None,
                          use_sim_time="false")
    context = rclpy.Context()
    rclpy.init(context=context, args=[])
    listener = Listener(context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(listener.node)
    spinning = threading.Event()
    spinning.set()

    def spin() -> None:
        while spinning.is_set():
            executor.spin_once(timeout_sec=0.05)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    nodes.start()
    results = []
    try:
        for rate in args.rates:
            listener.clear()
            dropped_before = listener.counters.get("dropped", 0)
            # frames before the gravity initialisation has its IMU samples get no odometry
            # (the first two of a pass: each pass starts the bag's time again, a reset)
            init_before = listener.counters.get("frames_before_init", 0)
            t0 = time.monotonic()
            log = replay(rate)
            # what the node still has queued when the replay ends comes out within a few s
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline:
                with listener.lock:
                    waiting = max(1, listener.counters.get("frames_before_init", 0)
                                  - init_before)
                    if listener.frames and len(listener.odom) >= len(listener.frames) - waiting:
                        break
                time.sleep(0.05)
            time.sleep(2.5)  # a diagnostics period, for the IMU counters
            with listener.lock:
                lags = np.array([(listener.odom[s] - t) * 1e3
                                 for s, t in listener.frames.items() if s in listener.odom])
                n_frames, n_odom = len(listener.frames), len(listener.odom)
                dropped = listener.counters.get("dropped", 0) - dropped_before
                not_estimated = listener.counters.get("frames_before_init", 0) - init_before
            wall = [line for line in log.splitlines() if "replayed" in line]
            # The frames before the gravity initialisation get no odometry, by design. A
            # node that falls behind shows it at the end of the bag, where its queue is
            # longest; a one-off stall (a page fault, another process) is not falling behind.
            tail = lags[-20:] if lags.size else lags
            kept_up = (n_odom >= n_frames - max(1, not_estimated) and dropped == 0
                       and tail.size > 0 and float(np.median(tail)) < args.max_lag_ms)
            row = {
                "rate": rate, "frames": n_frames, "odometry": n_odom,
                "imu_dropped": dropped,
                "lag_ms": {k: float(np.percentile(lags, q)) if lags.size else float("nan")
                           for k, q in (("p50", 50), ("p99", 99), ("max", 100))},
                "kept_up": bool(kept_up), "replay": wall[0].split("]: ")[-1] if wall else "",
                "elapsed_s": time.monotonic() - t0,
            }
            results.append(row)
            logger.info("rate %gx: %d/%d frames with odometry, %d IMU dropped, lag p50 %.1f / "
                        "p99 %.1f / max %.1f ms: %s", rate, n_odom, n_frames, dropped,
                        row["lag_ms"]["p50"], row["lag_ms"]["p99"], row["lag_ms"]["max"],
                        "kept up" if kept_up else "FELL BEHIND")
            time.sleep(1.5)  # the estimator resets on the next pass (stamps go back)
    finally:
        nodes.stop()
        spinning.clear()
        thread.join(timeout=5)
        executor.shutdown(timeout_sec=2.0)
        listener.node.destroy_node()
        rclpy.try_shutdown(context=context)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"params": args.params, "max_lag_ms": args.max_lag_ms,
                                    "rates": results}, indent=1))
    logger.info("-> %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
