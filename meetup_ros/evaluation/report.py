"""The main job's report: ``report.json`` and its figures, from the recorded outputs.

Inputs: the bag the nodes recorded (``/odom``, ``/depth``, ``/safety/status``,
``/diagnostics`` ...), the input bag (ground truth, IMU, stereo pairs) and the nodes' own
summaries (counters and latency). Every figure is computed here from those, with the
project's cores: trajectories through evo (``evaluation.trajectory``), dead reckoning
(``odometry.evaluation``), stereo depth targets and depth metrics (``slam.stereo``,
``slam.evaluation``), solver iterations (``slam.benchmark``).

Keys issue 2 fixes (never renamed): ``ate_rmse_m``, ``rpe_trans_m``,
``ate_rmse_m_dead_reckoning``, ``frames``, ``imu_samples_received``, ``imu_samples_dropped``,
``replay_speedup``, ``certificates``, ``latency_ms``, ``depth_absrel``,
``learned_over_gn_iterations``. A figure that could not be computed is null and its reason
is in ``errors``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from meetup_ros.evaluation.jsonsafe import finite_json

logger = logging.getLogger(__name__)

REQUIRED_KEYS = (
    "ate_rmse_m", "rpe_trans_m", "ate_rmse_m_dead_reckoning", "frames",
    "imu_samples_received", "imu_samples_dropped", "replay_speedup", "certificates",
    "latency_ms", "depth_absrel", "learned_over_gn_iterations",
)
# Which latency tracker of each node is its headline figure (per frame / keyframe / tick).
# EuRoC stereo pairs from this index on are never trained on (slam.benchmark's protocol).
HELDOUT_FIRST_PAIR = 76
HEADLINE_LATENCY = {
    "vio_node": "frame",
    "slam_node": "keyframe",
    "controller_node": "state_to_command",
    "safety_monitor_node": "certificate",
}


class ReportError(RuntimeError):
    """The recorded bag or the input bag cannot be read for the report."""


# ---- reading the recorded bag ---------------------------------------------------------------

def read_recorded(bag: Path, topic_names: list[str]) -> dict[str, list[Any]]:
    """Decoded messages per topic (in bag order) from the recorded outputs."""
    from meetup_ros.bags import BagError
    from meetup_ros.bags.importer import TYPESTORE
    from meetup_ros.bags.reader import bag_info, iter_raw_messages

    try:
        present = [t for t in topic_names if t in bag_info(bag, count_messages=False)["topics"]]
        out: dict[str, list[Any]] = {t: [] for t in topic_names}
        for raw in iter_raw_messages(bag, present):
            out[raw.topic].append(TYPESTORE.deserialize_cdr(raw.rawdata, raw.msgtype))
    except BagError as exc:
        raise ReportError(f"recorded bag {str(bag)!r}: {exc}") from None
    return out


def _stamp_ns(msg: Any) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def odometry_trajectory(messages: list[Any]) -> Any:
    """The /odom poses as an ``evaluation.trajectory.Trajectory`` (duplicates dropped)."""
    from meetup_ros.evaluation.trajectory import Trajectory

    rows: dict[int, tuple[list[float], list[float]]] = {}
    for msg in messages:
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        rows[_stamp_ns(msg)] = ([p.x, p.y, p.z], [q.x, q.y, q.z, q.w])
    stamps = np.array(sorted(rows), dtype=np.int64)
    return Trajectory(
        stamps,
        np.array([rows[s][0] for s in stamps]).reshape(-1, 3),
        np.array([rows[s][1] for s in stamps]).reshape(-1, 4),
        "vio_node /odom",
    )


def depth_image(msg: Any) -> np.ndarray:
    if msg.encoding != "32FC1":
        raise ReportError(f"/depth encoding {msg.encoding!r}, expected '32FC1'")
    data = np.asarray(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)
    return data[:, : msg.width * 4].copy().view("<f4").reshape(msg.height, msg.width)


# ---- figures ------------------------------------------------------------------------------

class _Figures:
    """Collects figures; a failing computation records its reason instead of a value."""

    def __init__(self) -> None:
        self.report: dict[str, Any] = {}
        self.errors: dict[str, str] = {}

    def compute(self, keys: tuple[str, ...], fn: Callable[[], Any]) -> Any:
        try:
            values = fn()
        except Exception as exc:  # each figure fails alone, with its reason in the report
            logger.warning("report: %s not computed: %s", ", ".join(keys), exc)
            logger.debug("report failure", exc_info=True)
            for key in keys:
                self.report[key] = None
                self.errors[key] = f"{type(exc).__name__}: {exc}"
            return None
        if len(keys) == 1:
            self.report[keys[0]] = values
        else:
            for key, value in zip(keys, values, strict=True):
                self.report[key] = value
        return values


def _number(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text else value


def node_summaries_from_diagnostics(
    arrays: list[Any], node_names: tuple[str, ...] = tuple(HEADLINE_LATENCY)
) -> dict[str, dict[str, Any]]:
    """Each node's last status on ``/diagnostics`` (its final one at shutdown) as a summary.

    The node's own status gives ``counters`` and ``latency_ms`` (from the
    ``latency.<tracker>.<stat>`` values, see ``ros.node_tools.NodeHealth``); each status named
    ``"<node>: <section>"`` gives ``summary[section]``. ``final`` says whether the shutdown
    status was recorded (else the last periodic one was used).
    """
    summaries: dict[str, dict[str, Any]] = {}
    for array in arrays:
        for status in array.status:
            node, _, section = status.name.partition(": ")
            if node not in node_names or section == "certificate":
                continue
            values = {kv.key: _number(kv.value) for kv in status.values}
            summary = summaries.setdefault(
                node, {"counters": {}, "latency_ms": {}, "final": False}
            )
            if section:
                summary[section] = values
                continue
            summary["final"] = status.message.startswith("final")
            summary["counters"] = {k: v for k, v in values.items() if not k.startswith("latency.")}
            latency: dict[str, dict[str, Any]] = {}
            for key, value in values.items():
                if key.startswith("latency."):
                    _, tracker, stat = key.split(".", 2)
                    name = stat.removesuffix("_ms")
                    latency.setdefault(tracker, {})[name] = (
                        float("nan") if value == "nan" else value
                    )
            summary["latency_ms"] = latency
    return summaries


def latency_table(node_summaries: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(headline ``{node: {"p50","p99"}}`` ms, every tracker of every node)."""
    headline: dict[str, Any] = {}
    detail: dict[str, Any] = {}
    for node, summary in node_summaries.items():
        trackers = summary.get("latency_ms", {})
        detail[node] = trackers
        name = HEADLINE_LATENCY.get(node)
        if name in trackers:
            headline[node] = {"p50": trackers[name]["p50"], "p99": trackers[name]["p99"]}
    return headline, detail


def build_report(
    *,
    recorded_bag: Path,
    input_bag: Path,
    node_summaries: Mapping[str, Any] | None,
    replay: Mapping[str, Any],
    out_dir: Path,
    short: bool = False,
    offline_reports: tuple[Path, ...] = (),
    depth_weights: str = "depth_code.pt",
    optimizer_weights: str = "slam_optimizer.pt",
) -> dict[str, Any]:
    """Compute every figure, write ``out_dir/report.json`` and the figures; return the report.

    ``node_summaries``: counters and latency per node; None reads each node's final status
    from the recorded ``/diagnostics`` (written to ``node_summaries.json``).
    ``offline_reports``: JSON files written by the offline evaluation commands (e.g.
    ``models/vio_report.json`` from ``meetup-ros evaluate-vio``); their figures that the
    bundled bag cannot give (the held-out flight, the moving visual sequences) are copied
    under the same keys, with their source in ``offline_figures_source``.
    ``short`` limits the offline comparisons (stereo depth targets, solver iterations) to a
    few pairs so the main job's test stays fast; the replay itself is the same.
    """
    from meetup_ros.bags.reader import read_sequence
    from meetup_ros.evaluation import trajectory as tr

    figures = _Figures()
    report = figures.report
    out_dir.mkdir(parents=True, exist_ok=True)
    recorded = read_recorded(
        recorded_bag, ["/odom", "/depth", "/safety/status", "/diagnostics", "/cmd",
                       "/controller/state"],
    )
    seq = read_sequence(input_bag)
    if node_summaries is None:
        node_summaries = node_summaries_from_diagnostics(recorded["/diagnostics"])
        for node in HEADLINE_LATENCY:
            if node not in node_summaries:
                figures.errors[f"node_summary.{node}"] = "no status on /diagnostics recorded"
            elif not node_summaries[node]["final"]:
                figures.errors[f"node_summary.{node}"] = (
                    "final status at shutdown not recorded; the last periodic one is used"
                )
    (out_dir / "node_summaries.json").write_text(
        json.dumps(finite_json(dict(node_summaries)), indent=2, default=str) + "\n"
    )
    vio = node_summaries.get("vio_node", {})
    monitor = node_summaries.get("safety_monitor_node", {})

    # ---- odometry ---------------------------------------------------------------------------
    est = figures.compute(("odometry_trajectory",), lambda: odometry_trajectory(recorded["/odom"]))
    report.pop("odometry_trajectory", None)
    gt = seq.groundtruth

    def _ate() -> tuple[float, float, int]:
        if est is None or gt is None:
            raise ReportError("no /odom recorded or no ground truth in the input bag")
        ate = tr.ate(est, gt, "se3")
        return float(ate["rmse_m"]), tr.rpe_trans(est, gt, delta=1, align="se3"), ate["pairs"]

    figures.compute(("ate_rmse_m", "rpe_trans_m", "ate_pairs"), _ate)

    def _dead_reckoning() -> float:
        from meetup_ros.odometry.evaluation import dead_reckoning

        if est is None or gt is None or len(est) < 2:
            raise ReportError("dead reckoning needs /odom stamps and ground truth")
        start_ns, end_ns = int(est.stamps_ns[0]), int(est.stamps_ns[-1])
        dr = dead_reckoning(seq, start_ns, end_ns)
        return tr.ate_rmse(dr, gt, "se3")

    figures.compute(("ate_rmse_m_dead_reckoning",), _dead_reckoning)
    published = replay.get("published", {})
    report["frames"] = int(vio.get("counters", {}).get("frames_received", 0))
    report["frames_published"] = int(published.get("/cam0/image_raw", 0))
    report["odometry_messages"] = len(recorded["/odom"])
    imu_stats = vio.get("imu", {})
    # imu.received counts every sample that arrived, refused ones too; without that section
    # (an older summary) the accepted count is the nearest figure
    counters = vio.get("counters", {})
    received = int(imu_stats.get("received",
                                 counters.get("imu_accepted", counters.get("imu_received", 0))))
    # Dropped = never reached the estimator (lost between replay and node) + dropped by it.
    lost = max(0, int(published.get("/imu0", received)) - received)
    report["imu_samples_published"] = int(published.get("/imu0", 0))
    report["imu_samples_received"] = received
    report["imu_samples_lost_in_transport"] = lost
    report["imu_samples_dropped"] = lost + int(imu_stats.get("dropped", 0))
    report["imu_samples_used"] = imu_stats.get("used")
    report["zero_velocity_updates"] = imu_stats.get("zero_velocity_updates")
    wall_s = float(replay.get("wall_s", float("nan")))
    report["replay_wall_s"] = wall_s
    report["replay_rate"] = replay.get("rate")
    report["replay_speedup"] = float(replay.get("bag_duration_s", 0.0)) / wall_s

    # ---- safety monitor --------------------------------------------------------------------
    counts = dict(monitor.get("certificates", {}))
    report["certificates"] = {k: int(counts.get(k, 0)) for k in ("verified", "violated",
                                                                    "unknown")}
    report["certificates_recorded"] = {
        k: sum(1 for m in recorded["/safety/status"] if m.data == k)
        for k in ("verified", "violated", "unknown")
    }
    report["latency_ms"], report["latency_ms_detail"] = latency_table(node_summaries)
    report["node_counters"] = {n: s.get("counters", {}) for n, s in node_summaries.items()}
    # What went to /cmd, beside the certificates: stale pairs get the stop without one (a
    # tester's loaded `demo --rate 3` had 92 of 95 stale and a summary of 2 verified only).
    gate = report["node_counters"].get("safety_monitor_node", {})
    report["commands"] = {
        "passed": int(gate.get("commands_passed", 0)),
        "stale_fallbacks": int(gate.get("stale_states", 0)),
        "watchdog_fallbacks": int(gate.get("watchdog_fallbacks", 0)),
        # the stop when the replay's /clock stood still at its end
        "clock_stop_fallbacks": int(gate.get("clock_stop_fallbacks", 0)),
    }
    if report["commands"]["stale_fallbacks"]:
        # Not "fell behind" alone: a tester's recorded bag (bag time = receive time, stamps
        # EuRoC's) had every state 12 years old on the replay's /clock.
        logger.warning("safety_monitor_node sent the stop for %d stale (state, command) pairs: "
                       "states older than max_state_age_s on the replay's /clock when they "
                       "arrived (the pipeline behind its inputs, or header stamps in another "
                       "time base than the bag's; safety_monitor_node's log gives the age)",
                       report["commands"]["stale_fallbacks"])
    # Published by vio_node but never received by the controller (each received one gets a
    # certificate): lost before DDS matched the two, at start-up.
    odom_out = report["node_counters"].get("vio_node", {}).get("odometry_published")
    odom_in = report["node_counters"].get("controller_node", {}).get("odometry_received")
    if odom_out is not None and odom_in is not None:
        report["odometry_lost_in_transport"] = max(0, int(odom_out) - int(odom_in))
        if report["odometry_lost_in_transport"]:
            logger.warning("controller_node received %d of the %d /odom messages vio_node "
                           "published", odom_in, odom_out)

    # ---- depth -----------------------------------------------------------------------------
    depth_msgs = recorded["/depth"]
    report["keyframes"] = len(depth_msgs)
    max_pairs = 3 if short else 12
    figures.compute(
        ("depth_absrel", "depth_rmse_m", "depth_delta1", "depth_keyframes_scored",
         "depth_absrel_heldout_frames"),
        lambda: _depth_scores(seq, depth_msgs, max_pairs, out_dir),
    )

    def _solver() -> tuple[float, dict[str, Any]]:
        from meetup_ros import paths
        from meetup_ros.slam.benchmark import solver_comparison
        from meetup_ros.slam.data import euroc_stereo_pairs
        from meetup_ros.slam.depth_code import DepthCodeModel
        from meetup_ros.slam.learned import LearnedStep

        depth_model = DepthCodeModel.from_weights(paths.model_path(depth_weights))
        step = LearnedStep.from_weights(paths.model_path(optimizer_weights))
        pairs = euroc_stereo_pairs(input_bag, depth_model.cfg.height, depth_model.cfg.width)
        # Frames >= HELDOUT_FIRST_PAIR are held out of the SLAM training (slam.benchmark).
        heldout = [p for p in pairs if int(p.name.rsplit("_", 1)[-1]) >= HELDOUT_FIRST_PAIR]
        chosen = heldout or pairs
        count = min(2 if short else 6, len(chosen))
        picks = [chosen[round(k)] for k in np.linspace(0, len(chosen) - 1, count)]
        result = solver_comparison(list({p.name: p for p in picks}.values()), depth_model, step)
        summary: dict[str, Any] = {
            k: v for k, v in result.items() if isinstance(v, int | float | str)
        }
        summary["pairs"] = [p.name for p in picks]
        summary["pairs_held_out_of_training"] = bool(heldout)
        return float(result["learned_over_gn_iterations"]), summary

    figures.compute(("learned_over_gn_iterations", "solver_comparison"), _solver)

    # ---- files -----------------------------------------------------------------------------
    if est is not None and len(est):
        tr.write_tum(out_dir / "vio_trajectory.tum", est)
        figures.compute(("trajectory_plot",), lambda: str(tr.plot_trajectories(
            out_dir / "trajectory.png", {"vio_node": est}, gt, align="se3",
            title="vio_node /odom vs EuRoC ground truth (SE(3)-aligned)",
        )))
    if gt is not None:
        tr.write_tum(out_dir / "groundtruth.tum", gt)
    _write_certificates(out_dir, report, recorded["/diagnostics"])
    report.update(offline_figures(offline_reports))
    report["errors"] = figures.errors
    report["inputs"] = {"input_bag": str(input_bag), "recorded_bag": str(recorded_bag),
                        "short": short, "replay": dict(replay)}
    report = finite_json(report)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


# Figures of the offline evaluations that the bundled bag (at rest) cannot give, and the
# at-rest figure of the network alone (the replay runs with zero-velocity updates). The
# solver comparison on monocular and Middlebury pairs needs ../shared/data
# (`meetup-ros benchmark-slam`); the demo's own comparison is on the bag's stereo pairs.
OFFLINE_KEYS = (
    "ate_rmse_m_inertial_heldout", "ate_rmse_m_inertial_heldout_dead_reckoning",
    "ate_rmse_m_visual", "ate_rmse_m_visual_baseline",
    "ate_rmse_m_without_zero_velocity_updates",
    "learned_over_gn_iterations_mono", "learned_over_gn_iterations_mono_untouched",
    "learned_over_gn_iterations_mono_late",
    "learned_over_gn_iterations_middlebury",
)


def offline_figures(paths: tuple[Path, ...]) -> dict[str, Any]:
    """``OFFLINE_KEYS`` found in the given JSON reports, and where each came from."""
    out: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for path in paths:
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            logger.warning("offline report %s unreadable: %s", path, exc)
            continue
        for key in OFFLINE_KEYS:
            if key in data and key not in out:
                out[key] = data[key]
                sources[key] = str(path)
    if sources:
        out["offline_figures_source"] = sources
    return out


# ---- depth helpers ------------------------------------------------------------------------

def _depth_scores(
    seq: Any, depth_msgs: list[Any], max_pairs: int, out_dir: Path
) -> tuple[float, float, float, int, float | None]:
    """Mean AbsRel, RMSE and delta<1.25 of /depth against stereo targets on the same pairs.

    The last value is the AbsRel over keyframes from frames the depth network never saw
    (index >= HELDOUT_FIRST_PAIR; the camera is at rest, so the scene is the same room), or
    None when no keyframe falls there.
    """
    from meetup_ros.slam.data import stereo_frame_pairs
    from meetup_ros.slam.evaluation import depth_metrics
    from meetup_ros.slam.stereo import stereo_depth

    if not depth_msgs:
        raise ReportError("no /depth was recorded")
    by_stamp = {_stamp_ns(m): m for m in depth_msgs}
    # a keyframe's stamp is its cam0 image's; cam1's partner by slam_node's pairing rule
    partner = dict(stereo_frame_pairs(seq))
    index0 = {int(s): i for i, s in enumerate(seq.cam0.stamps_ns)}
    stamps = [s for s in sorted(by_stamp) if index0.get(s) in partner]
    if not stamps:
        raise ReportError("no /depth stamp matches a stereo pair of the input bag")
    picks = [stamps[round(k)] for k in np.linspace(0, len(stamps) - 1,
                                                     min(max_pairs, len(stamps)))]
    rows = []
    frames: list[int] = []
    example = None
    for stamp in dict.fromkeys(picks):
        pred = depth_image(by_stamp[stamp])
        image0 = seq.cam0.images[index0[stamp]]
        ref = stereo_depth(image0, seq.cam1.images[partner[index0[stamp]]], seq.cam0,
                           seq.cam1, seq.T_cam0_cam1)
        metrics = depth_metrics(pred, ref)
        rows.append((metrics["absrel"], metrics["rmse_m"], metrics["delta1"]))
        frames.append(index0[stamp])
        example = (stamp, image0, pred, ref, metrics)
    absrel, rmse, delta1 = (float(np.mean([r[i] for r in rows])) for i in range(3))
    heldout = [r[0] for r, f in zip(rows, frames, strict=True) if f >= HELDOUT_FIRST_PAIR]
    absrel_heldout = float(np.mean(heldout)) if heldout else None
    summary = {"keyframes_scored": len(rows), "absrel": absrel, "rmse_m": rmse,
               "delta1": delta1, "frames": frames,
               "absrel_heldout_frames": absrel_heldout,
               "note": f"frames < {HELDOUT_FIRST_PAIR} were in the depth network's training set",
               "per_keyframe": [list(r) for r in rows],
               "target": "OpenCV SGBM stereo depth of the same pair (slam.stereo.stereo_depth)"}
    (out_dir / "depth_summary.json").write_text(json.dumps(finite_json(summary), indent=2) + "\n")
    if example is not None:
        _plot_depth(out_dir / "depth.png", *example)
    return absrel, rmse, delta1, len(rows), absrel_heldout


def _plot_depth(path: Path, stamp_ns: int, image0: np.ndarray, pred: np.ndarray,
                ref: np.ndarray, metrics: Mapping[str, float]) -> None:
    from meetup_ros.evaluation import plots

    fig = plots.figure((13, 3.6))
    axes = fig.subplots(1, 3)
    finite = np.concatenate([pred[np.isfinite(pred)], ref[np.isfinite(ref)]])
    vmax = float(np.percentile(finite, 98)) if finite.size else 5.0
    axes[0].imshow(image0, cmap="gray")
    axes[0].set_title(f"cam0 {stamp_ns}")
    for ax, depth, title in ((axes[1], pred, "slam_node /depth [m]"),
                             (axes[2], ref, "stereo SGBM target [m]")):
        shown = ax.imshow(depth, cmap="viridis", vmin=0.0, vmax=vmax)
        ax.set_title(title)
        fig.colorbar(shown, ax=ax, fraction=0.046)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"AbsRel {metrics['absrel']:.3f}, RMSE {metrics['rmse_m']:.3f} m, "
                 f"delta<1.25 {metrics['delta1']:.3f} (NaN = invalid, white)")
    plots.save(fig, path, dpi=90)


def _write_certificates(out_dir: Path, report: Mapping[str, Any], diagnostics: list[Any]) -> None:
    """certificates.json and certificates.md: counts, latency, and the last violations."""
    violations = []
    for array in diagnostics:
        for status in array.status:
            if status.name.endswith("certificate") and status.message == "violated":
                violations.append({kv.key: kv.value for kv in status.values})
    summary = {
        "counts": report.get("certificates"),
        "latency_ms": report.get("latency_ms", {}).get("safety_monitor_node"),
        "violations_recorded": len(violations),
        "last_violations": violations[-5:],
    }
    (out_dir / "certificates.json").write_text(json.dumps(finite_json(summary), indent=2) + "\n")
    counts = summary["counts"] or {}
    latency = summary["latency_ms"] or {}
    lines = [
        "# Safety monitor certificates",
        "",
        "| verified | violated | unknown | p50 ms | p99 ms |",
        "|---:|---:|---:|---:|---:|",
        f"| {counts.get('verified')} | {counts.get('violated')} | {counts.get('unknown')} | "
        f"{_fmt(latency.get('p50'))} | {_fmt(latency.get('p99'))} |",
        "",
    ]
    for v in violations[-5:]:
        lines.append(f"- violated over [{v.get('lower')}, {v.get('upper')}]: "
                     f"x = {v.get('counterexample_x')}, y = {v.get('counterexample_y')}")
    (out_dir / "certificates.md").write_text("\n".join(lines) + "\n")


def _fmt(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) and math.isfinite(value) else str(value)
