"""SlamFrontend on the bundled bag: keyframes, depth, points, priors, resets, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from meetup_ros.slam import SlamError
from meetup_ros.slam.evaluation import depth_metrics
from meetup_ros.slam.frontend import SlamFrontend
from meetup_ros.slam.stereo import stereo_depth


@pytest.fixture(scope="module")
def seq(repo_root: Path):
    from meetup_ros.bags.reader import read_sequence

    return read_sequence(repo_root / "data" / "euroc_v1_01_easy_sample")


def _frontend(repo_root: Path, seq, stereo: bool = True, **cfg: object) -> SlamFrontend:
    models = repo_root / "models"
    return SlamFrontend.from_weights(
        models / "depth_code.pt", models / "slam_optimizer.pt", seq.cam0.info,
        seq.cam1.info if stereo else None, seq.T_cam0_cam1 if stereo else None, **cfg,
    )


def test_stereo_keyframes_depth_points_and_prior(repo_root: Path, seq) -> None:
    fe = _frontend(repo_root, seq, keyframe_every_n=4, keyframe_interval_s=10.0)
    stamps = seq.cam0.stamps_ns
    T_prior = np.eye(4)
    T_prior[:3, 3] = [1.0, 2.0, 0.5]
    keyframes = []
    for i in range(80, 89):
        kf = fe.process(int(stamps[i]), seq.cam0.images[i], seq.cam1.images[i],
                        T_prior if i >= 84 else None)
        keyframes.append((i, kf))
    chosen = [i for i, kf in keyframes if kf is not None]
    assert chosen == [80, 84, 88]  # the first frame, then every 4th at rest
    i, kf = keyframes[-1]
    assert kf is not None
    assert kf.depth_m.shape == (240, 376) and kf.depth_m.dtype == np.float32
    valid = np.isfinite(kf.depth_m)
    assert 0.5 < valid.mean() < 1.0 and np.all(kf.depth_m[valid] > 0)
    assert kf.points_cam.shape == (int(valid.sum()), 3) and kf.points_cam.dtype == np.float32
    np.testing.assert_allclose(np.sort(kf.points_cam[:, 2]), np.sort(kf.depth_m[valid]),
                               rtol=1e-5)
    np.testing.assert_allclose(kf.T_world_cam, T_prior)
    assert kf.solver == "learned" and 1 <= kf.iterations <= 5
    assert np.isfinite(kf.photometric_error)
    # Held-out frame: the keyframe depth agrees with SGBM on the same pair.
    ref = stereo_depth(seq.cam0.images[i], seq.cam1.images[i], seq.cam0.info, seq.cam1.info,
                       seq.T_cam0_cam1)
    assert depth_metrics(kf.depth_m, ref)["absrel"] < 0.25
    # The optimised stereo pose stays near the calibration (11 cm along x).
    assert kf.T_cam1_cam0_estimate is not None
    assert abs(np.linalg.norm(kf.T_cam1_cam0_estimate[:3, 3]) - 0.110) < 0.03


def test_motion_prior_triggers_keyframes_and_time_going_back_resets(
    repo_root: Path, seq
) -> None:
    fe = _frontend(repo_root, seq, solver="gauss_newton", keyframe_every_n=100,
                   keyframe_translation_m=0.05)
    stamps, im0, im1 = seq.cam0.stamps_ns, seq.cam0.images, seq.cam1.images
    T = np.eye(4)
    assert fe.process(int(stamps[0]), im0[0], im1[0], T) is not None
    assert fe.process(int(stamps[1]), im0[1], im1[1], T) is None
    moved = T.copy()
    moved[0, 3] = 0.08
    kf = fe.process(int(stamps[2]), im0[2], im1[2], moved)
    assert kf is not None and kf.solver == "gauss_newton"
    # A loop in the bag: time goes back -> reset -> the next frame is a keyframe again.
    assert fe.process(int(stamps[0]), im0[0], im1[0], T) is not None


def test_monocular_mode_runs(repo_root: Path, seq) -> None:
    """At rest two monocular keyframes have no baseline: the depth is the single-image guess,
    which a tester found published as metres (2.6 m for KITTI's 7.4 m road). Now NaN, saying
    why, unless min_two_view_support is 0 (the guess asked for)."""
    for support, valid in ((0.3, False), (0.0, True)):
        fe = _frontend(repo_root, seq, stereo=False, keyframe_every_n=2,
                       min_two_view_support=support)
        out = [fe.process(int(seq.cam0.stamps_ns[i]), seq.cam0.images[i]) for i in range(4)]
        kfs = [kf for kf in out if kf is not None]
        assert len(kfs) == 2
        if valid:
            assert np.isfinite(kfs[1].depth_m).mean() > 0.5
            assert kfs[1].depth_supported
        else:
            assert not np.isfinite(kfs[0].depth_m).any() and not np.isfinite(kfs[1].depth_m).any()
            assert len(kfs[1].points_cam) == 0
            assert "hardly differ" in kfs[0].unsupported_reason
            assert "no baseline" in kfs[1].unsupported_reason
        # At rest the camera barely moves between keyframes.
        assert np.linalg.norm(kfs[1].T_world_cam[:3, 3]) < 0.2


def test_depth_the_second_view_does_not_confirm_is_nan(repo_root: Path, seq) -> None:
    """A tester's black, noise, swapped or flat pairs gave 74 % valid depth, as a real pair
    does: the decoder's single-image guess. The second view must now confirm it."""
    fe = _frontend(repo_root, seq, keyframe_every_n=1)
    im0, im1 = seq.cam0.images[80], seq.cam1.images[80]
    rng = np.random.default_rng(0)
    cases = {
        "real": (im0, im1, ""),
        "right camera dead": (im0, np.zeros_like(im1), "flat"),
        "right camera noise": (im0, rng.integers(0, 256, im1.shape, dtype=np.uint8),
                               "does not confirm"),
        "both grey": (np.full_like(im0, 128), np.full_like(im1, 128), "flat"),
        "cameras swapped": (im1, im0, "turned by"),
        "the same image twice": (im0, im0, "turned by"),
    }
    stamp = int(seq.cam0.stamps_ns[0])
    for name, (a, b, why) in cases.items():
        stamp += 10**9
        kf = fe.process(stamp, a, b)
        assert kf is not None
        if not why:
            assert kf.depth_supported and np.isfinite(kf.depth_m).mean() > 0.5, name
            assert 0.5 < kf.two_view_support < 1.0, (name, kf.two_view_support)
        else:
            assert not kf.depth_supported and not np.isfinite(kf.depth_m).any(), name
            assert why in kf.unsupported_reason, (name, kf.unsupported_reason)
            assert len(kf.points_cam) == 0, name


def test_bad_input_is_named(repo_root: Path, seq, tmp_path: Path) -> None:
    fe = _frontend(repo_root, seq)
    with pytest.raises(SlamError, match=r"image0 .* shape"):
        fe.process(1, np.zeros((10, 10), np.uint8), seq.cam1.images[0])
    with pytest.raises(SlamError, match="image1=None"):
        fe.process(1, seq.cam0.images[0], None)
    with pytest.raises(SlamError, match="unknown frontend options"):
        _frontend(repo_root, seq, itertions=3)
    with pytest.raises(SlamError, match="solver"):
        _frontend(repo_root, seq, solver="adam")
    with pytest.raises(SlamError, match="does not exist"):
        SlamFrontend.from_weights(tmp_path / "missing.pt", None, seq.cam0.info)


@pytest.mark.parametrize("solver", ["learned", "gauss_newton"])
def test_warm_up_at_start_gives_the_same_keyframes(repo_root: Path, seq, solver: str) -> None:
    """slam_node warms the solver at start-up and builds its frontend without a warm-up when
    camera_info arrives: the keyframes must be those of a frontend that warmed itself."""
    from meetup_ros.slam.depth_code import DepthCodeModel
    from meetup_ros.slam.frontend import FrontendConfig, warm_up_solver
    from meetup_ros.slam.learned import LearnedStep

    models = repo_root / "models"
    model = DepthCodeModel.from_weights(models / "depth_code.pt")
    step = LearnedStep.from_weights(models / "slam_optimizer.pt") if solver == "learned" else None
    cfg = FrontendConfig(solver=solver, keyframe_every_n=4)
    warm_up_solver(model, step, cfg)  # no camera needed
    results = []
    for warm_up in (False, True):
        fe = SlamFrontend(model, step, seq.cam0.info, seq.cam1.info, seq.T_cam0_cam1, cfg,
                          warm_up=warm_up)
        kfs = [fe.process(int(seq.cam0.stamps_ns[i]), seq.cam0.images[i], seq.cam1.images[i])
               for i in range(4)]
        results.append([kf for kf in kfs if kf is not None])
    cold, warm = results
    assert len(cold) == len(warm) == 1
    np.testing.assert_array_equal(cold[0].depth_m, warm[0].depth_m)
    assert cold[0].iterations == warm[0].iterations
    with pytest.raises(SlamError, match="optimizer weights"):
        warm_up_solver(model, None, FrontendConfig(solver="learned"))


def test_monocular_two_view_poses_are_not_chained_onto_odometry(repo_root: Path, seq) -> None:
    """Monocular without odometry chains two-view poses (its own frame, unknown scale); once
    the odometry's metric poses were used, a keyframe without one has no pose ("none"), not a
    two-view step chained onto the odometry's frame (a tester's poses after /odom stopped)."""
    fe = _frontend(repo_root, seq, stereo=False, keyframe_every_n=2)
    T_prior = np.eye(4)
    T_prior[:3, 3] = [0.7, 0.07, 0.01]
    sources = []
    for i in range(8):
        prior = T_prior if 2 <= i < 4 else None
        kf = fe.process(int(seq.cam0.stamps_ns[i]), seq.cam0.images[i], None, prior)
        if kf is not None:
            sources.append(kf.pose_source)
    assert sources == ["two_view", "prior", "none", "none"], sources
    fe.reset("time went back")
    kf = fe.process(int(seq.cam0.stamps_ns[0]), seq.cam0.images[0])
    assert kf is not None and kf.pose_source == "two_view"


def test_a_camera_smaller_than_the_network_grid_is_refused(repo_root: Path, seq) -> None:
    from types import SimpleNamespace

    K = np.array([[200.0, 0.0, 0.5], [0.0, 200.0, 120.0], [0.0, 0.0, 1.0]])
    info = SimpleNamespace(K=K, dist=np.zeros(4), width=1, height=240)
    with pytest.raises(SlamError, match=r"camera of 1 x 240 pixels is smaller than the depth "):
        SlamFrontend.from_weights(repo_root / "models" / "depth_code.pt",
                                  repo_root / "models" / "slam_optimizer.pt", info)


def test_a_step_trained_with_another_depth_network_is_warned_of_by_the_frontend(
    repo_root: Path, seq, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The frontend loaded any pair of weights without a word (a tester's code_dim 8 depth
    network with the shipped step); a step that records its depth network is now checked."""
    import logging

    from meetup_ros.slam.learned import LearnedStep
    from meetup_ros.training.checkpoint import load_weights, save_weights

    step_path = repo_root / "models" / "slam_optimizer.pt"
    state, meta = load_weights(step_path, kind=LearnedStep.WEIGHTS_KIND)
    recorded = tmp_path / "step.pt"
    save_weights(recorded, state, **{**meta, "depth_code_dim": 8,
                                     "depth_weights_sha256": "0" * 64})
    with caplog.at_level(logging.INFO):
        SlamFrontend.from_weights(repo_root / "models" / "depth_code.pt", recorded,
                                  seq.cam0.info, seq.cam1.info, seq.T_cam0_cam1)
    assert "code_dim" in caplog.text and "step.pt" in caplog.text, caplog.text
    assert any(r.levelno == logging.WARNING for r in caplog.records)


def test_a_keyframe_solve_stops_once_the_error_settles(repo_root: Path, seq) -> None:
    """Stereo pairs tied to their calibration converge in 2-4 iterations: the keyframe stops
    there (``tolerance``) instead of running every one of ``iterations``; 0 runs them all."""
    counts = {}
    for tol in (0.0, 1e-3):
        fe = _frontend(repo_root, seq, keyframe_every_n=1, tolerance=tol)
        counts[tol] = [fe.process(int(seq.cam0.stamps_ns[i]), seq.cam0.images[i],
                                  seq.cam1.images[i]).iterations for i in range(0, 95, 8)]
    assert counts[0.0] == [5] * 12
    # 3.4 on average over all 95 pairs (the last 18 take 4-5)
    assert all(1 <= n <= 5 for n in counts[1e-3]) and np.mean(counts[1e-3]) < 4.0, counts


@pytest.mark.parametrize("tolerance", [-1e-3, 1.0, float("nan")])
def test_a_tolerance_outside_0_1_is_refused(repo_root: Path, seq, tolerance: float) -> None:
    with pytest.raises(SlamError, match=r"^tolerance .* must be in \[0, 1\)"):
        _frontend(repo_root, seq, tolerance=tolerance)
