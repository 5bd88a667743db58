"""The speed governor: state, region, expert, ONNX export, and the shipped network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from meetup_ros.control import ControlError
from meetup_ros.control.expert import CONTINUE, SLOW, STOP, ExpertRule
from meetup_ros.control.network import GovernorNet, GovernorRuntime, export_onnx
from meetup_ros.control.region import region
from meetup_ros.control.state import (
    STATE_NAMES,
    StateAxes,
    build_state,
    nearest_depth_m,
    state_sigma,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_ONNX = REPO_ROOT / "models" / "governor.onnx"


def test_state_axes_euroc() -> None:
    # EuRoC: forward = body +z, up = body +x, so left = up x forward = -y.
    state = build_state(np.array([0.1, 0.2, 1.5]), np.array([0.3, 0.0, 0.0]), 2.0)
    np.testing.assert_allclose(state, [1.5, -0.2, 0.1, 0.3, 2.0])
    axes = StateAxes(forward_base=(1.0, 0.0, 0.0), up_base=(0.0, 0.0, 1.0))
    np.testing.assert_allclose(axes.matrix(), [[1, 0, 0], [0, 1, 0], [0, 0, 1]], atol=1e-12)
    with pytest.raises(ControlError, match="parallel"):
        StateAxes(forward_base=(0.0, 0.0, 1.0), up_base=(0.0, 0.0, 2.0)).matrix()
    with pytest.raises(ControlError, match="finite 3-vectors"):
        build_state(np.array([np.nan, 0, 0]), np.zeros(3), 1.0)
    with pytest.raises(ControlError, match="nearest_depth nan"):
        build_state(np.zeros(3), np.zeros(3), float("nan"))


@pytest.mark.parametrize(("forward", "up", "which"), [
    ((0.0, 0.0, 0.0), (1.0, 0.0, 0.0), "forward"),
    ((0.0, 0.0, float("nan")), (1.0, 0.0, 0.0), "forward"),
    ((0.0, 0.0, 1.0), (0.0, float("inf"), 0.0), "up"),
    ((0.0, 0.0, 1.0), (0.0, 0.0, 0.0), "up"),
])
def test_state_axes_refuse_an_axis_without_direction(forward: tuple[float, ...],
                                                     up: tuple[float, ...], which: str) -> None:
    """A zero or non-finite axis has no direction: it only gave a RuntimeWarning and NaN axes
    (every state then NaN) before."""
    with pytest.raises(ControlError, match=rf"{which} axis .* is not a direction: expected a "
                                           "finite, non-zero 3-vector"):
        StateAxes(forward_base=forward, up_base=up).matrix()
    # a long axis is a direction too (scaled before its norm is taken)
    axes = StateAxes(forward_base=(0.0, 0.0, 1e300), up_base=(1e-300, 0.0, 0.0)).matrix()
    np.testing.assert_allclose(axes, StateAxes().matrix())


def test_nearest_depth_is_a_robust_low_percentile() -> None:
    depth = np.full((40, 60), 5.0, dtype=np.float32)
    depth[20, 30] = 0.01  # one outlier: a minimum would follow it, a percentile does not
    depth[15:25, 25:35] = 2.0  # an obstacle in the centre
    depth[:, :5] = 0.5  # close, but outside the central window
    assert nearest_depth_m(depth) == pytest.approx(2.0)
    assert np.isnan(nearest_depth_m(np.full((10, 10), np.nan, dtype=np.float32)))
    with pytest.raises(ControlError, match=r"must be \(H, W\)"):
        nearest_depth_m(np.zeros(5))


def test_region_and_sigma() -> None:
    cov = np.eye(6) * 1e-6
    cov[2, 2] = 0.04  # forward (body z) speed variance
    cov[3, 3] = 0.01  # yaw rate (about body x = up) variance
    sigma = state_sigma(cov)
    np.testing.assert_allclose(sigma, [0.2, 1e-3, 1e-3, 0.1, 0.0])
    state = np.array([1.0, 0.0, 0.0, 0.0, 3.0])
    lower, upper = region(state, sigma, np.full(5, 0.1), k_sigma=2.0)
    np.testing.assert_allclose(lower, [0.5, -0.102, -0.102, -0.3, 2.9])
    np.testing.assert_allclose(upper, [1.5, 0.102, 0.102, 0.3, 3.1])
    with pytest.raises(ControlError, match="differ"):
        region(state, sigma[:4], np.zeros(5))
    with pytest.raises(ControlError, match="non-negative"):
        region(state, sigma, -np.ones(5))
    with pytest.raises(ControlError, match="not finite"):
        region(np.full(5, np.nan), sigma, np.zeros(5))
    bad = cov.copy()
    bad[2, 2] = -0.04  # clipped to 0, it would have shrunk the region to the radii
    with pytest.raises(ControlError, match="negative variances"):
        state_sigma(bad)
    indefinite = np.eye(6) * 1e-6
    indefinite[1, 1] = indefinite[2, 2] = 0.01
    indefinite[1, 2] = indefinite[2, 1] = 0.03  # |cov| > var: no covariance matrix
    with pytest.raises(ControlError, match="not positive semi-definite"):
        state_sigma(indefinite, StateAxes(forward_base=(0.0, 0.7071067811865476,
                                                        0.7071067811865476),
                                          up_base=(1.0, 0.0, 0.0)))


def _planar() -> np.ndarray:
    cov = np.zeros((6, 6))
    cov[0, 0] = cov[1, 1] = cov[5, 5] = 0.01  # a ground robot's x, y and yaw only
    return cov


def _offdiagonal_only() -> np.ndarray:
    cov = np.zeros((6, 6))
    cov[0, 1] = cov[1, 0] = 0.01
    return cov


def _not_psd() -> np.ndarray:
    cov = np.eye(6) * 1e-4
    cov[0, 2] = cov[2, 0] = 10.0
    return cov


def _asymmetric() -> np.ndarray:
    cov = np.eye(6) * 1e-4
    cov[0, 2] = 1e-5
    return cov


def _cross_block_not_psd() -> np.ndarray:
    cov = np.eye(6) * 1e-4
    cov[2, 3] = cov[3, 2] = 1.0  # forward speed against roll rate: no covariance
    return cov


def _zero_forward() -> np.ndarray:
    cov = np.eye(6) * 1e-4
    cov[2, 2] = 0.0
    return cov


@pytest.mark.parametrize(("make", "message"), [
    (_zero_forward, r"no variance along \['forward_speed_mps'\]"),
    (_planar, r"no variance along \['forward_speed_mps', 'yaw_rate_radps'\]"),
    (_offdiagonal_only, "linear block is not positive semi-definite"),
    (_not_psd, "linear block is not positive semi-definite"),
    (_asymmetric, "not symmetric"),
    (_cross_block_not_psd, "6x6 matrix is not positive semi-definite"),
])
def test_covariances_that_say_nothing_about_an_axis_are_refused(make: Any, message: str) -> None:
    """A tester's monitor certified each of these over its radii alone (EuRoC axes: forward is
    body z, up body x): a variance of 0 along a state axis is unknown, not exact."""
    with pytest.raises(ControlError, match=message):
        state_sigma(make())


def test_expert_rule_table() -> None:
    rule = ExpertRule()
    states = np.array([
        [1.0, 0.0, 0.0, 0.0, 5.0],  # ttc 5 s
        [1.0, 0.0, 0.0, 0.0, 2.0],  # ttc 2 s
        [1.0, 0.0, 0.0, 0.0, 0.5],  # ttc 0.5 s
        [-0.5, 0.0, 0.0, 0.0, 2.0],  # backing away
        [0.2, 0.0, 0.0, 1.2, 5.0],  # turning fast
        [0.5, 0.0, 0.0, 0.0, 1.0],  # the property's corner: ttc 2 s
        # Clearance: "continue" commands 1 m/s forward whatever the speed now, so close to
        # an obstacle only "stop" is safe, at rest and backing away too (a tester found the
        # governor saying "continue" at rest 0.1 m from a wall).
        [0.0, 0.0, 0.0, 0.0, 0.1],
        [0.0, 0.0, 0.0, 0.0, 0.7],
        [-0.5, 0.0, 0.0, 0.0, 0.2],
        [0.0, 0.0, 0.0, 0.0, 0.8],  # beyond the clearance: at rest, nothing closing
    ])
    np.testing.assert_array_equal(rule.labels(states), [CONTINUE, SLOW, STOP, CONTINUE, SLOW,
                                                        SLOW, STOP, STOP, STOP, CONTINUE])
    # The expert itself satisfies both governor properties everywhere in their domains.
    rng = np.random.default_rng(0)
    domain = rng.uniform([0.5, -1.5, -1.0, -1.5, 0.1], [3.0, 1.5, 1.0, 1.5, 1.0], (5000, 5))
    assert not np.any(rule.labels(domain) == CONTINUE)
    close = rng.uniform([-1.25, -2.25, -1.75, -2.0, -1.0], [3.75, 2.25, 1.75, 2.0, 0.5],
                        (5000, 5))
    assert np.all(rule.labels(close) == STOP)


def test_onnx_export_matches_torch_and_onnxruntime(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = GovernorNet(mean=np.array([1.0, 0.0, 0.0, 0.0, 3.0]),
                      std=np.array([1.0, 0.5, 0.5, 0.5, 2.0]))
    path = export_onnx(net, tmp_path / "g.onnx")
    import onnx

    model = onnx.load(str(path))
    assert [n.op_type for n in model.graph.node] == ["Gemm", "Relu", "Gemm", "Relu", "Gemm"]
    states = np.random.default_rng(1).uniform(-2, 5, size=(64, 5))
    runtime = GovernorRuntime(path)
    with torch.no_grad():
        expected = net(torch.as_tensor(states, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(runtime.scores_batch(states), expected, atol=1e-5)
    np.testing.assert_allclose(runtime.scores(states[0]), expected[0], atol=1e-5)
    with pytest.raises(ControlError, match="expects 5"):
        runtime.scores(np.zeros(4))
    with pytest.raises(ControlError, match="does not exist"):
        GovernorRuntime(tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(ControlError, match="not a loadable ONNX model"):
        GovernorRuntime(tmp_path / "bad.onnx")


def test_shipped_governor_on_sampled_states() -> None:
    """The shipped network never puts "continue" on top in its property's domain (sampled)
    and agrees with the expert on most of the envelope."""
    if not SHIPPED_ONNX.is_file():
        pytest.fail(f"{SHIPPED_ONNX} is missing; rebuild with `meetup-ros train controller`")
    runtime = GovernorRuntime(SHIPPED_ONNX)
    rng = np.random.default_rng(7)
    domain = rng.uniform([0.5, -1.5, -1.0, -1.5, 0.1], [3.0, 1.5, 1.0, 1.5, 1.0], (20000, 5))
    scores = runtime.scores_batch(domain)
    continue_top = scores[:, CONTINUE] >= np.delete(scores, CONTINUE, axis=1).max(axis=1)
    assert not np.any(continue_top), domain[continue_top][:5]
    # Close at any speed (the clearance property's box): "stop" strictly on top.
    close = rng.uniform([-1.25, -2.25, -1.75, -2.0, -1.0], [3.75, 2.25, 1.75, 2.0, 0.5],
                        (20000, 5))
    scores = runtime.scores_batch(close)
    stop_not_top = scores[:, STOP] <= np.delete(scores, STOP, axis=1).max(axis=1)
    assert not np.any(stop_not_top), close[stop_not_top][:5]
    assert int(np.argmax(runtime.scores([0.0, 0.0, 0.0, 0.0, 0.1]))) == STOP  # the tester's
    envelope = rng.uniform([-0.5, -1.5, -1.0, -1.5, 0.1], [3.0, 1.5, 1.0, 1.5, 10.0], (5000, 5))
    agreement = np.mean(runtime.scores_batch(envelope).argmax(1) == ExpertRule().labels(envelope))
    assert agreement > 0.9
    assert len(STATE_NAMES) == runtime.input_size


@pytest.mark.parametrize("name", ["governor_property", "governor_clearance_property"])
def test_shipped_governor_is_proven_safe_over_the_envelope(name: str) -> None:
    """Branch and bound proves each property over a finite box (offline): the operating
    envelope, and for the clearance property that envelope widened by the monitor's region."""
    from meetup_ros.verification.bab import verify
    from meetup_ros.verification.network import load_network
    from meetup_ros.verification.spec import load_property_yaml

    envelope = load_property_yaml(REPO_ROOT / "config" / f"{name}_envelope.yaml")
    runtime_prop = load_property_yaml(REPO_ROOT / "config" / f"{name}.yaml")
    # The envelope file is the runtime property restricted to a finite box.
    assert len(envelope.disjuncts) == len(runtime_prop.disjuncts)
    for d_env, d_run in zip(envelope.disjuncts, runtime_prop.disjuncts, strict=True):
        np.testing.assert_array_equal(d_env.coeffs, d_run.coeffs)
        np.testing.assert_array_equal(d_env.rhs, d_run.rhs)
        assert np.all(d_env.lower >= d_run.lower) and np.all(d_env.upper <= d_run.upper)
        assert np.all(np.isfinite(d_env.lower)) and np.all(np.isfinite(d_env.upper))
    # one thread, as `meetup-ros verify` and `train controller` run it: with another process
    # on the second core, two threads took the clearance proof past 60 s (15.7 s alone)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = verify(load_network(SHIPPED_ONNX), envelope, timeout_s=60)
    finally:
        torch.set_num_threads(threads)
    assert result.status == "unsat", result


def test_train_controller_short_run(tmp_path: Path) -> None:
    """Two DFW epochs on the bundled bag plus synthetic states: files, metrics, ONNX check."""
    from meetup_ros.control.training import ControllerOptions, train_controller
    from meetup_ros.training.config import TrainConfig

    cfg = TrainConfig(
        bags=(REPO_ROOT / "data" / "euroc_v1_01_easy_sample",), out_dir=tmp_path, epochs=2,
        extra={"synthetic_samples": "3000", "depth_pairs": "3", "verify_timeout_s": "0"},
    )
    metrics = train_controller(cfg)
    for name in ("governor.onnx", "checkpoint.pt", "metrics.csv"):
        assert (tmp_path / name).is_file(), name
    assert metrics["epoch"] == 2
    assert metrics["onnx_max_abs_error"] < 1e-4
    assert 0.0 <= metrics["accuracy_heldout_synthetic"] <= 1.0
    assert 0.0 <= metrics["property_continue_top_rate_sampled"] <= 1.0
    assert 0.0 <= metrics["clearance_stop_not_top_rate_sampled"] <= 1.0
    with pytest.raises(ControlError, match=r"unknown controller option\(s\) \['epoch'\]"):
        ControllerOptions.from_extra({"epoch": "3"})
    with pytest.raises(ControlError, match="is not of type int"):
        ControllerOptions.from_extra({"hidden": "wide"})


def test_verify_export_proves_both_properties(tmp_path: Path) -> None:
    """What `train controller` reports after export: a network that always says "continue"
    is refuted on both properties' finite boxes (the shipped one is proven on both by
    test_shipped_governor_is_proven_safe_over_the_envelope, with the same verifier)."""
    from governors import always_continue_onnx

    from meetup_ros.control.training import verify_export

    unsafe = verify_export(always_continue_onnx(tmp_path / "continue.onnx"), timeout_s=60)
    assert unsafe["property_proven"] == 0.0 and unsafe["clearance_property_proven"] == 0.0
    assert set(unsafe) == {"property_proven", "property_verify_s", "clearance_property_proven",
                           "clearance_property_verify_s"}


def test_train_controller_fails_when_the_network_is_not_proven(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One epoch at a tiny step: the governor is written but not proven on its properties,
    and `meetup-ros train controller` exits 1 naming them (it exited 0, and make retrain
    would have taken the file)."""
    from meetup_ros.cli import main

    code = main(["train", "controller", "--bag", str(REPO_ROOT / "data" /
                 "euroc_v1_01_easy_sample"), "--out", str(tmp_path), "--epochs", "1",
                 "--optimizer", "adam", "--lr", "1e-6", "--set", "synthetic_samples=600",
                 "--set", "depth_pairs=2", "--set", "verify_timeout_s=20"])
    assert code == 1
    assert (tmp_path / "governor.onnx").is_file()
    assert "NOT proven safe" in caplog.text and "clearance_property" in caplog.text



def test_motion_history_bounds_distance_and_rotation() -> None:
    """Path and twist, whichever is larger; a pose reset adds its jump; a twist-only source
    still counts; without odometry near the stamp, the fastest speed seen times the age."""
    from scipy.spatial.transform import Rotation

    from meetup_ros.control.motion import MotionHistory

    def pose(z: float, yaw: float = 0.0) -> np.ndarray:
        T = np.eye(4)
        T[:3, :3] = Rotation.from_euler("x", yaw).as_matrix()  # EuRoC: up = body +x
        T[2, 3] = z
        return T

    s = 1_000_000_000
    h = MotionHistory(maxlen=100)
    for i in range(11):  # 1 m/s along +z for 1 s, then the estimator resets to the origin
        h.add(i * s // 10, pose(0.1 * i), np.array([0, 0, 1.0]), np.zeros(3))
    h.add(11 * s // 10, pose(0.0), np.array([0, 0, 1.0]), np.zeros(3))
    moved = h.since(0, 11 * s // 10)
    assert moved.distance_m == pytest.approx(1.0 + 1.0)  # the path grows by the jump back
    assert moved.rotation_rad == pytest.approx(0.0)
    assert h.since(5 * s // 10, 11 * s // 10).distance_m == pytest.approx(0.5 + 1.0)

    h.clear()  # twist only: the pose stays at the origin, the speed and rate do not
    for i in range(11):
        h.add(i * s // 10, np.eye(4), np.array([0, 0, 1.0]), np.array([1.5, 0, 0]))
    moved = h.since(0, s)
    assert moved.distance_m == pytest.approx(1.0) and moved.rotation_rad == pytest.approx(1.5)

    h.clear()  # a turn in place, from the poses
    for i in range(11):
        h.add(i * s // 10, pose(0.0, yaw=0.15 * i), np.zeros(3), np.zeros(3))
    assert h.since(0, s).rotation_rad == pytest.approx(1.5)
    assert h.since(0, s).distance_m == pytest.approx(0.0)

    h.clear()  # the depth is older than any odometry held: fastest speed since x age
    h.add(2 * s, np.eye(4), np.array([0, 0, 0.5]), np.zeros(3))
    h.add(3 * s, np.eye(4), np.array([0, 0, 2.0]), np.array([0, 0, 0.1]))
    moved = h.since(s, 3 * s)
    assert moved.distance_m == pytest.approx(4.0) and moved.rotation_rad == pytest.approx(0.2)


def test_real_states_from_a_bag_with_unset_stamps_are_named_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A tester's bag with every header stamp 0 gave one real state, silently."""
    from bag_variants import zero_stamp_bag

    from meetup_ros.control.training import ControllerOptions, real_states

    bag = zero_stamp_bag(tmp_path / "zero_stamps")
    states, _ = real_states((bag,), ControllerOptions.from_extra({"depth_pairs": "1"}))
    assert states.shape == (1, len(STATE_NAMES))
    assert (f"bags [{str(bag)!r}]: only 1 real state(s) at 20 Hz: ground truth and IMU header "
            "stamps overlap over 0..0 ns (are the stamps unset?)") in caplog.text


def test_train_prints_metrics_as_valid_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """NaN metrics (no real held-out state) were printed as bare NaN, which JSON refuses."""
    import json

    from meetup_ros.cli import main
    from meetup_ros.cli import train as train_cli

    metrics = {"accuracy_heldout_real": float("nan"), "eval_loss": float("inf"),
               "accuracy_train": 0.5, "per_class": [float("nan"), 1.0]}
    monkeypatch.setattr(train_cli, "load_trainer", lambda network: lambda cfg: metrics)
    assert main(["train", "controller", "--bag", str(REPO_ROOT / "data" /
                 "euroc_v1_01_easy_sample"), "--out", str(tmp_path)]) == 0

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} printed: not JSON")

    printed = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert printed == {"accuracy_heldout_real": None, "eval_loss": None, "accuracy_train": 0.5,
                       "per_class": [None, 1.0]}
