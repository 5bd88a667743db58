"""Solver benchmark on held-out two-view pairs: learned step vs Gauss-Newton vs LM (and
coarse-to-fine GN).

Protocol (per pair): zero codes and the ground-truth relative pose perturbed by a seeded
random increment (``rot_rad`` about a random axis, ``trans_frac`` of the baseline along a
random direction; at least 2 cm) are the start; every solver runs up to ``max_iterations``.
GN stops at convergence (relative change < 1e-4) or when a step would raise the error; its
error there is the target. For each solver we count the iterations (and wall time) until
its error is within ``tolerance`` (relative, default 0.5 %) of the target; a solver that never
gets there is charged ``max_iterations`` and counted in ``*_not_reached``.
``learned_over_gn_iterations`` = sum of learned iterations / sum of GN iterations.
Coarse-to-fine GN (``solvers.coarse_to_fine_gauss_newton``, the half-resolution level the
learned step also reads, then the fine one) runs beside them as the classical answer to the
same slowness: ``c2f_over_gn_iterations`` and ``learned_over_c2f_iterations``.

Pairs: EuRoC stereo pairs >= 76 (held out from all training; pose = calibration, metric),
the first ``MONO_HELD_OUT_PAIRS`` consecutive-frame pairs of the two KITTI snippets and of the
TUM frames (held out: the learned step trains on pairs from ``MONO_TRAIN_FROM`` on; free pose,
ground truth compared with translation as a direction only), pairs 4-7 ("untouched") and the
KITTI pairs from ``MONO_LATE_FROM`` ("late"; see ``slam.data`` for what each group was used
for), and the Middlebury pair. Each group's pairs are compared with the training pairs the
step's weights record (metadata ``train``): a group with any of them is named in a warning
and marked ``held_out: false`` (``trained_on`` lists them; ``null`` where the weights record
none). The step's weights are checked to belong with the depth network
(``weights_pairing``: matches, mismatch with a warning, or unknown for weights written before
they recorded it; see ``learned.check_depth_pairing``). Depth:
the optimised code's depth of view A against SGBM on the EuRoC pairs (64 x 96 grid), and
full-resolution keyframe depth of the frontend against full-resolution SGBM.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from meetup_ros.evaluation import datasets
from meetup_ros.evaluation.jsonsafe import finite_json
from meetup_ros.slam import SlamError
from meetup_ros.slam import data as slam_data
from meetup_ros.slam.depth_code import DepthCodeModel
from meetup_ros.slam.evaluation import depth_metrics
from meetup_ros.slam.learned import LearnedStep, check_depth_pairing, learned_solve
from meetup_ros.slam.solvers import (
    SolverResult,
    TwoViewProblem,
    coarse_to_fine_gauss_newton,
    gauss_newton,
    levenberg_marquardt,
    make_problem,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchmarkConfig:
    max_iterations: int = 20
    tolerance: float = 0.005
    rot_rad: float = 0.02
    trans_frac: float = 0.2
    seed: int = 0
    stereo_pose_prior_weight: float = 10.0
    mono_pose_prior_weight: float = 0.0


def start_point(problem: TwoViewProblem, T_b_a: np.ndarray, rng: np.random.Generator,
                cfg: BenchmarkConfig) -> torch.Tensor:
    x0 = problem.zero()
    k = problem.code_dim
    axis = rng.normal(size=3)
    direction = rng.normal(size=3)
    trans = max(cfg.trans_frac * float(np.linalg.norm(T_b_a[:3, 3])), 0.02)
    x0[2 * k:2 * k + 3] = torch.from_numpy(trans * direction / np.linalg.norm(direction))
    x0[2 * k + 3:] = torch.from_numpy(cfg.rot_rad * axis / np.linalg.norm(axis))
    return x0


def iterations_to_reach(result: SolverResult, target: float, tolerance: float,
                        max_iterations: int) -> tuple[int, float, bool]:
    """(iterations, wall seconds, reached) until error <= target * (1 + tolerance)."""
    for i, err in enumerate(result.errors):
        if err <= target * (1.0 + tolerance):
            return i, result.times_s[i], True
    return max_iterations, result.times_s[-1], False


def pose_errors(problem: TwoViewProblem, x: torch.Tensor, T_b_a_true: np.ndarray,
                metric: bool) -> dict[str, float]:
    """Rotation error (deg) and translation error (m if metric, else direction angle deg)."""
    R, t = problem.pose(x)
    R_est, t_est = R.detach().numpy().astype(np.float64), t.detach().numpy().astype(np.float64)
    dR = R_est.T @ T_b_a_true[:3, :3]
    rot_deg = float(np.degrees(np.arccos(np.clip((np.trace(dR) - 1) / 2, -1, 1))))
    t_true = T_b_a_true[:3, 3]
    if metric:
        return {"rot_deg": rot_deg, "trans_m": float(np.linalg.norm(t_est - t_true))}
    cos = float(t_est @ t_true / max(np.linalg.norm(t_est) * np.linalg.norm(t_true), 1e-12))
    return {"rot_deg": rot_deg, "trans_dir_deg": float(np.degrees(np.arccos(np.clip(cos, -1, 1))))}


def solver_comparison(
    pairs: list[slam_data.PairSample], depth_model: DepthCodeModel, step: LearnedStep,
    cfg: BenchmarkConfig | None = None,
) -> dict[str, Any]:
    """Compare learned, GN and LM on pairs; see the module docstring for the protocol.

    Returns ``learned_over_gn_iterations``, ``gn_iterations``, ``learned_iterations``,
    ``lm_iterations`` (sums), wall times, not-reached counts, mean pose errors per solver,
    depth metrics where the pairs have depth, and ``curves`` (mean E_t / E_0 per iteration).

    Raises:
        SlamError: no pairs.
    """
    cfg = cfg or BenchmarkConfig()
    if not pairs:
        raise SlamError("solver_comparison got no pairs; expected at least one two-view pair")
    rng = np.random.default_rng(cfg.seed)
    torch.set_num_threads(1)
    names = ("learned", "gauss_newton", "levenberg_marquardt", "coarse_to_fine_gauss_newton")
    iters = {n: 0 for n in names}
    walls = {n: 0.0 for n in names}
    missed = {n: 0 for n in names}
    pose_err: dict[str, list[dict[str, float]]] = {n: [] for n in (*names, "start")}
    depth_rows: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    curves: dict[str, list[np.ndarray]] = {n: [] for n in names}
    per_pair = []
    for pair in pairs:
        weight = cfg.stereo_pose_prior_weight if pair.metric else cfg.mono_pose_prior_weight
        problem = make_problem(depth_model.net, pair.image_a, pair.image_b, pair.K, pair.T_b_a,
                               pose_prior_weight=weight, K_b=pair.K_b)
        x0 = start_point(problem, pair.T_b_a, rng, cfg)
        pose_err["start"].append(pose_errors(problem, x0, pair.T_b_a, pair.metric))
        results = {
            "gauss_newton": gauss_newton(problem, x0, cfg.max_iterations),
            "levenberg_marquardt": levenberg_marquardt(problem, x0, cfg.max_iterations),
            "learned": learned_solve(step, problem, x0, cfg.max_iterations),
            "coarse_to_fine_gauss_newton": coarse_to_fine_gauss_newton(
                problem, x0, cfg.max_iterations),
        }
        target = results["gauss_newton"].errors[-1]
        row: dict[str, Any] = {"pair": pair.name, "target_error": target,
                               "initial_error": results["gauss_newton"].errors[0]}
        for name, res in results.items():
            n_it, wall, ok = iterations_to_reach(res, target, cfg.tolerance, cfg.max_iterations)
            iters[name] += n_it
            walls[name] += wall
            missed[name] += int(not ok)
            errs = pose_errors(problem, res.x, pair.T_b_a, pair.metric)
            pose_err[name].append(errs)
            curve = np.full(cfg.max_iterations + 1, res.errors[-1]) / res.errors[0]
            curve[: len(res.errors)] = np.asarray(res.errors) / res.errors[0]
            curves[name].append(curve)
            # the error at res.x, the point the solver returns (the learned step returns its
            # best iterate, which need not be its last)
            row[name] = {"iterations": n_it, "reached": ok, "final_error": problem.error(res.x),
                         **errs}
            if pair.depth_a_m is not None:
                h, w = pair.depth_a_m.shape
                with torch.no_grad():
                    d = problem.depth(problem.view_a, problem.split(res.x)[0])
                m = depth_metrics(d.reshape(h, w).numpy(), pair.depth_a_m)
                depth_rows[name].append(m)
                row[name]["depth_absrel"] = m["absrel"]
        per_pair.append(row)
    out: dict[str, Any] = {
        "pairs": len(pairs),
        "learned_over_gn_iterations": iters["learned"] / max(iters["gauss_newton"], 1),
        "learned_over_gn_wall_time": walls["learned"] / max(walls["gauss_newton"], 1e-9),
        "gn_iterations": iters["gauss_newton"],
        "learned_iterations": iters["learned"],
        "lm_iterations": iters["levenberg_marquardt"],
        "c2f_iterations": iters["coarse_to_fine_gauss_newton"],
        "c2f_over_gn_iterations": (iters["coarse_to_fine_gauss_newton"]
                                   / max(iters["gauss_newton"], 1)),
        "learned_over_c2f_iterations": (iters["learned"]
                                        / max(iters["coarse_to_fine_gauss_newton"], 1)),
        "gn_wall_s": walls["gauss_newton"],
        "learned_wall_s": walls["learned"],
        "lm_wall_s": walls["levenberg_marquardt"],
        "c2f_wall_s": walls["coarse_to_fine_gauss_newton"],
        "learned_not_reached": missed["learned"],
        "lm_not_reached": missed["levenberg_marquardt"],
        "c2f_not_reached": missed["coarse_to_fine_gauss_newton"],
        # the iteration counts are capped at max_iterations: the ratios change meaning with
        # it (a tester's --max-iterations 3 made the mono ratio 0.67 where 20 gives 0.43)
        "tolerance": cfg.tolerance,
        "max_iterations": cfg.max_iterations,
    }
    short = {"learned": "learned", "gauss_newton": "gn", "levenberg_marquardt": "lm",
             "coarse_to_fine_gauss_newton": "c2f", "start": "start"}
    for name in (*names, "start"):
        keys = sorted({k for e in pose_err[name] for k in e})
        for key in keys:
            vals = [e[key] for e in pose_err[name] if key in e]
            out[f"{short[name]}_{key}"] = float(np.mean(vals))
        if depth_rows.get(name):
            for key in ("absrel", "rmse_m", "delta1"):
                values = [m[key] for m in depth_rows[name]]
                out[f"{short[name]}_depth_{key}"] = float(np.mean(values))
    out["curves"] = {short[n]: np.mean(curves[n], 0).tolist() for n in names}
    out["per_pair"] = per_pair
    return out


def frontend_depth(bag: Path, depth_weights: Path, optimizer_weights: Path,
                   first_index: int = slam_data.EUROC_HELD_OUT_FROM) -> dict[str, float]:
    """Full-resolution keyframe depth of the frontend vs SGBM on held-out EuRoC frames, and
    its time per keyframe."""
    from meetup_ros.bags.reader import read_sequence
    from meetup_ros.slam.frontend import SlamFrontend
    from meetup_ros.slam.stereo import stereo_depth

    seq = read_sequence(bag)
    frames = slam_data.stereo_frame_pairs(seq)
    assert seq.cam0 is not None and seq.cam1 is not None and seq.T_cam0_cam1 is not None
    fe = SlamFrontend.from_weights(depth_weights, optimizer_weights, seq.cam0.info,
                                   seq.cam1.info, seq.T_cam0_cam1, keyframe_every_n=1)
    rows, ms = [], []
    for i, j in frames:
        if i < first_index:
            continue
        image0, image1 = seq.cam0.images[i], seq.cam1.images[j]
        kf = fe.process(int(seq.cam0.stamps_ns[i]), image0, image1)
        if kf is None:
            continue
        ms.append(kf.elapsed_s * 1e3)
        ref = stereo_depth(image0, image1, seq.cam0.info, seq.cam1.info, seq.T_cam0_cam1)
        rows.append(depth_metrics(kf.depth_m, ref))
    return {
        "frontend_depth_absrel": float(np.mean([r["absrel"] for r in rows])),
        "frontend_depth_rmse_m": float(np.mean([r["rmse_m"] for r in rows])),
        "frontend_depth_delta1": float(np.mean([r["delta1"] for r in rows])),
        "frontend_keyframes": len(rows),
        "frontend_ms_p50": float(np.percentile(ms, 50)),
        "frontend_ms_p99": float(np.percentile(ms, 99)),
    }


def middlebury_sgbm_reference() -> dict[str, float]:
    """Classical reference: OpenCV SGBM on the full-resolution Motorcycle pair vs its GT."""
    import cv2
    import skimage.data

    from meetup_ros.slam.stereo import SgbmConfig, sgbm_disparity

    left, right, disp_gt = skimage.data.stereo_motorcycle()
    gray_l = cv2.cvtColor(left, cv2.COLOR_RGB2GRAY)
    gray_r = cv2.cvtColor(right, cv2.COLOR_RGB2GRAY)
    disp = sgbm_disparity(gray_l, gray_r, SgbmConfig(num_disparities=128, block_size=5))
    f, doffs, baseline = 994.978, 31.086, 0.193001
    depth = f * baseline / (disp + doffs)
    ref = f * baseline / (disp_gt.astype(np.float64) + doffs)
    metrics = depth_metrics(depth, ref)
    return {f"sgbm_{k}": v for k, v in metrics.items()}


def plot_curves(curves: dict[str, list[float]], path: Path, title: str) -> None:
    from meetup_ros.evaluation import plots

    fig = plots.figure((5, 3.5))
    ax = fig.subplots()
    for name, values in curves.items():
        ax.plot(range(len(values)), values, marker="o", ms=3, label=name)
    ax.set_xlabel("iteration")
    ax.set_ylabel("photometric error / initial")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    plots.save(fig, path, dpi=120)


def run_benchmark(bag: Path, data_root: Path, out_dir: Path, depth_weights: Path,
                  optimizer_weights: Path, cfg: BenchmarkConfig | None = None,
                  euroc_stride: int = 2,
                  mono_limit: int = slam_data.MONO_HELD_OUT_PAIRS) -> dict[str, Any]:
    """Run everything, write out_dir/benchmark_slam.json and the error-vs-iteration plots.

    Each monocular group records ``data_root`` and ``sequences`` (pairs per sequence folder).

    Raises:
        DatasetError: the KITTI/TUM folders are not all under ``data_root`` (all missing ones
            are named), or one of their files is malformed; found before any solver runs.
        SlamError, BagError: bad weights or bag.
    """
    start = time.perf_counter()
    datasets.mono_sequence_folders(data_root)  # fail at once, before the weights and the bag
    depth_model = DepthCodeModel.from_weights(depth_weights)
    step = LearnedStep.from_weights(optimizer_weights)
    # a step trained with another depth network ran without a word (warned, not refused)
    status, detail = check_depth_pairing(depth_model, depth_weights, optimizer_weights,
                                         step.loaded_metadata)
    h, w = depth_model.cfg.height, depth_model.cfg.width
    # Monocular groups (first pair, pairs per sequence); see slam.data for what each was
    # used for. Pairs 4-7 ("untouched") were never looked at while choosing the training
    # recipe, unlike 0-3, so the fairer figure of the two; 35-49 ("late", KITTI only) neither.
    # Read before the EuRoC work so that a malformed file fails in seconds; each comparison
    # seeds its own generator, so the order does not change the figures.
    groups = (("mono", 0, mono_limit),
              ("mono_untouched", slam_data.MONO_HELD_OUT_PAIRS,
               slam_data.MONO_TRAIN_FROM - slam_data.MONO_HELD_OUT_PAIRS),
              ("mono_late", slam_data.MONO_LATE_FROM, slam_data.MONO_LATE_PAIRS))
    mono = {key: slam_data.mono_pose_pairs(data_root, h, w, limit=limit, first=first)
            for key, first, limit in groups}
    euroc = slam_data.euroc_stereo_pairs(bag, h, w, 1)
    _, held = slam_data.euroc_split(euroc, euroc_stride)
    motorcycle = slam_data.motorcycle_pair(h, w)
    # before the solvers run (36 s): a group the step was trained on is said at once
    overlap = training_overlap(
        {"euroc_stereo": held, "middlebury_stereo": [motorcycle], **mono},
        recorded_training_pairs(optimizer_weights), optimizer_weights)
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"euroc_stereo": solver_comparison(held, depth_model, step, cfg)}
    report["weights_pairing"] = {"status": status, "detail": detail}
    report["middlebury_stereo"] = solver_comparison([motorcycle], depth_model, step, cfg)
    report["middlebury_sgbm_reference"] = middlebury_sgbm_reference()
    for key, pairs in mono.items():
        if pairs:
            report[key] = solver_comparison(pairs, depth_model, step, cfg)
            # which sequences gave the figure (a partial data root once dropped some silently)
            report[key]["data_root"] = str(data_root)
            report[key]["sequences"] = slam_data.pairs_per_sequence(pairs)
    for key, trained_on in overlap.items():
        if key in report:
            # [] held out as the README says; the names otherwise; None: not recorded
            report[key]["trained_on"] = trained_on
            report[key]["held_out"] = None if trained_on is None else not trained_on
    report["groups_trained_on"] = sorted(k for k, v in overlap.items() if v and k in report)
    report["frontend"] = frontend_depth(bag, depth_weights, optimizer_weights)
    report["wall_s"] = time.perf_counter() - start
    for key in ("euroc_stereo", "middlebury_stereo", "mono", "mono_untouched", "mono_late"):
        if key in report:
            trained_on = report[key].get("trained_on") or []
            title = (f"{key}: {report[key]['pairs']} pairs, {len(trained_on)} TRAINED ON"
                     if trained_on else f"{key}: {report[key]['pairs']} held-out pairs")
            plot_curves(report[key]["curves"], out_dir / f"error_vs_iteration_{key}.png", title)
    (out_dir / "benchmark_slam.json").write_text(json.dumps(finite_json(report), indent=1))
    (out_dir / "slam_report.json").write_text(json.dumps(
        finite_json(summary_figures(report, depth_weights, optimizer_weights)), indent=1))
    return report


def recorded_training_pairs(optimizer_weights: Path) -> set[str] | None:
    """The pair names the learned step's weights record as trained on (metadata ``train``,
    written by ``train optimizer``), or None where they record none.

    Raises:
        SlamError: the file is missing, corrupt or of another kind.
    """
    from meetup_ros.training.checkpoint import CheckpointError, load_weights

    try:
        _, meta = load_weights(Path(optimizer_weights), kind=LearnedStep.WEIGHTS_KIND)
    except CheckpointError as exc:
        raise SlamError(str(exc)) from exc
    train = meta.get("train")
    if not isinstance(train, list):
        return None
    return {str(name) for name in train}


def training_overlap(groups: dict[str, list[slam_data.PairSample]], trained: set[str] | None,
                     optimizer_weights: Path) -> dict[str, list[str] | None]:
    """Per group, its pairs that the step's weights record as training pairs (sorted; None
    for every group where the weights record no training list, said in one info line).

    The groups are reported as held out, yet a step trained with a larger ``mono_pairs``
    (before it was bounded) or on other data was scored on its own training pairs without
    a word (a tester's mono_late, 30 pairs it had trained on): each group that overlaps is
    named in a warning, and run_benchmark marks it in the report (``held_out``: false).
    """
    if trained is None:
        logger.info("%s records no training pairs: whether the benchmark's pairs are held "
                    "out from it is unknown", optimizer_weights)
        return dict.fromkeys(groups)
    out: dict[str, list[str] | None] = {}
    for key, pairs in groups.items():
        overlap = sorted({p.name for p in pairs} & trained)
        out[key] = overlap
        if overlap:
            shown = ", ".join(overlap[:3]) + (", ..." if len(overlap) > 3 else "")
            logger.warning("benchmark group %s: %d of its %d pairs are training pairs of "
                           "%s (%s): its figures are not held-out ones (held_out: false in "
                           "benchmark_slam.json)", key, len(overlap), len(pairs),
                           optimizer_weights, shown)
    return out


def summary_figures(report: dict[str, Any], depth_weights: Path,
                    optimizer_weights: Path) -> dict[str, Any]:
    """The figures ``make demo`` copies into report.json (models/slam_report.json): the
    learned/GN iteration ratio and the learned step's pose and depth errors per group of
    held-out pairs."""
    out: dict[str, Any] = {"weights": {"depth": str(depth_weights),
                                       "optimizer": str(optimizer_weights),
                                       "pairing": report.get("weights_pairing", {}).get(
                                           "status")}}
    for key, name in (("euroc_stereo", "stereo"), ("middlebury_stereo", "middlebury"),
                      ("mono", "mono"), ("mono_untouched", "mono_untouched"),
                      ("mono_late", "mono_late")):
        if key not in report:
            continue
        group = report[key]
        out[f"learned_over_gn_iterations_{name}"] = group["learned_over_gn_iterations"]
        out[f"solver_comparison_{name}"] = {
            k: v for k, v in group.items() if k not in ("curves", "per_pair")}
    return out
