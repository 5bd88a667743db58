"""RuntimeMonitor: verified / violated / unknown, the deadline, reuse between ticks, and
errors that must leave the gate closed ("unknown", never "verified")."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from meetup_ros.verification import VerificationInputError, bab
from meetup_ros.verification.examples import governor_demo_network
from meetup_ros.verification.falsify import onnxruntime_forward
from meetup_ros.verification.mip import solve_min_max_margin
from meetup_ros.verification.onnx_loader import save_onnx
from meetup_ros.verification.runtime import RuntimeMonitor
from meetup_ros.verification.spec import load_property_yaml
from meetup_ros.verification.vnnlib import load_vnnlib

YAML = Path(__file__).parent / "data" / "verification" / "governor_property.yaml"
RADIUS = np.array([0.4, 0.3, 0.3, 0.3, 0.3])


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def nets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("governor")
    return {name: save_onnx(governor_demo_network(safe=name == "safe"), folder / f"{name}.onnx")
            for name in ("safe", "unsafe")}


def test_verified_inside_and_outside_the_property_domain(nets: dict[str, Path]) -> None:
    monitor = RuntimeMonitor(nets["safe"], YAML)
    center = np.array([1.0, 0.0, 0.0, 0.0, 0.8])
    cert = monitor.certify(center - RADIUS, center + RADIUS)
    assert cert.status == "verified" and cert.domains >= 1, cert
    far = np.array([1.0, 0.0, 0.0, 0.0, 5.0])
    cert = monitor.certify(far - RADIUS, far + RADIUS)
    assert cert.status == "verified" and cert.domains == 0
    assert "outside the property's domain" in cert.reason


def test_violated_with_a_confirmed_counterexample(nets: dict[str, Path]) -> None:
    monitor = RuntimeMonitor(nets["unsafe"], YAML)
    center = np.array([0.7, 0.0, 0.0, 0.0, 1.1])
    lower, upper = center - RADIUS, center + RADIUS
    cert = monitor.certify(lower, upper)
    assert cert.status == "violated", cert
    x = cert.counterexample_x
    assert x is not None and np.all(x >= lower) and np.all(x <= upper)
    assert x[0] >= 0.5 and x[4] <= 1.0  # inside the property's domain
    y = onnxruntime_forward(str(nets["unsafe"]), x)
    assert y[0] >= y[1] and y[0] >= y[2]
    assert cert.counterexample_y is not None
    np.testing.assert_allclose(cert.counterexample_y, y, atol=1e-5)
    # The next tick re-tries the same counterexample first.
    again = monitor.certify(lower, upper)
    assert again.status == "violated" and "previous counterexample" in again.reason


@pytest.mark.parametrize("margin", [0.0, 0.1, 0.5])
def test_every_verified_region_is_confirmed_by_the_mip(nets: dict[str, Path],
                                                       margin: float) -> None:
    """Sweep regions over the unsafe net; each "verified" must be true by the exact MIP,
    whether it was proven alone, with a margin, or answered from a box proven with one."""
    monitor = RuntimeMonitor(nets["unsafe"], YAML, deadline_s=1.0, region_margin=margin)
    prop = load_property_yaml(YAML)
    d = prop.disjuncts[0]
    rng = np.random.default_rng(3)
    counts = {"verified": 0, "violated": 0, "unknown": 0}
    for _ in range(25):
        center = np.array([rng.uniform(0, 2), 0, 0, 0, rng.uniform(0.5, 2.5)])
        radius = RADIUS * rng.uniform(0.2, 1.0)
        cert = monitor.certify(center - radius, center + radius)
        counts[cert.status] += 1
        lo = np.maximum(center - radius, d.lower)
        up = np.minimum(center + radius, d.upper)
        if cert.status == "verified" and np.all(lo <= up):
            mip = solve_min_max_margin(monitor.network, d.coeffs, d.rhs, lo, up)
            assert mip.objective > 0, (center, radius, mip)
        if cert.status == "violated":
            assert cert.counterexample_x is not None and cert.counterexample_y is not None
            assert prop.is_unsafe(cert.counterexample_x, cert.counterexample_y)
    assert counts["verified"] >= 3 and counts["violated"] >= 3, counts


def test_drifting_regions_answered_from_margin_proofs_hold_by_the_mip(
        nets: dict[str, Path]) -> None:
    """A state that drifts and a sigma that wobbles, across the unsafe net's boundary: many
    ticks are answered from boxes proven with a margin, and every "verified" holds exactly."""
    monitor = RuntimeMonitor(nets["unsafe"], YAML, deadline_s=1.0, region_margin=0.1)
    d = monitor.prop.disjuncts[0]
    rng = np.random.default_rng(5)
    center = np.array([1.8, 0.0, 0.0, 0.0, 0.9])
    counts = {"verified": 0, "violated": 0, "unknown": 0}
    for _ in range(60):
        # slowing down towards the obstacle: from safe speeds into the unsafe ones
        center = (center + rng.normal(0, 0.01, 5) * np.array([1, 1, 1, 1, 0.5])
                  - np.array([0.005, 0, 0, 0, 0]))
        radius = np.array([0.15, 0.1, 0.1, 0.1, 0.1]) * rng.uniform(0.95, 1.05)
        lo, up = center - radius, center + radius
        cert = monitor.certify(lo, up)
        counts[cert.status] += 1
        if cert.status == "verified":
            box_lo, box_up = np.maximum(lo, d.lower), np.minimum(up, d.upper)
            if np.all(box_lo <= box_up):
                mip = solve_min_max_margin(monitor.network, d.coeffs, d.rhs, box_lo, box_up)
                assert mip.objective > 0, (lo, up, cert.reason, mip)
        if cert.status == "violated":
            x, y = cert.counterexample_x, cert.counterexample_y
            assert x is not None and y is not None and np.all(x >= lo) and np.all(x <= up)
            assert monitor.prop.is_unsafe(x, y)
    assert monitor.stats["cache_hits"] >= 8 and monitor.stats["proven_with_margin"] >= 3, (
        monitor.stats)
    assert counts["verified"] >= 15 and counts["violated"] >= 10, counts


def test_deadline_respected_and_p99_under_50ms(nets: dict[str, Path]) -> None:
    monitor = RuntimeMonitor(nets["safe"], YAML, deadline_s=0.05)
    rng = np.random.default_rng(4)
    elapsed = []
    for _ in range(100):
        center = np.array([rng.uniform(0, 2.5), rng.uniform(-0.5, 0.5), rng.uniform(-0.3, 0.3),
                           rng.uniform(-0.5, 0.5), rng.uniform(0.3, 3.0)])
        start = time.monotonic()
        cert = monitor.certify(center - RADIUS, center + RADIUS)
        elapsed.append(time.monotonic() - start)
        assert cert.status == "verified", cert
    assert np.percentile(elapsed, 99) < 0.05


def test_unknown_when_out_of_time_then_resumed(shared_data: Path) -> None:
    folder = shared_data / "acasxu"
    prop = load_vnnlib(folder / "prop_4.vnnlib")
    monitor = RuntimeMonitor(folder / "ACASXU_run2a_1_1_batch_2000.onnx", prop, deadline_s=0.02)
    d = prop.disjuncts[0]
    start = time.monotonic()
    cert = monitor.certify(d.lower, d.upper)
    assert cert.status == "unknown" and "deadline" in cert.reason, cert
    # Batches are sized to the time left: little overshoot even on a loaded machine.
    assert time.monotonic() - start < 0.02 + 0.1
    # A slightly smaller region resumes the open domains instead of starting over.
    shrink = (d.upper - d.lower) * 0.01
    for _ in range(100):
        cert = monitor.certify(d.lower + shrink, d.upper - shrink, deadline_s=0.25)
        if cert.status != "unknown":
            break
    assert monitor.stats["resumed"] >= 1
    assert cert.status == "verified", cert
    # ... and the certified box now answers at once.
    again = monitor.certify(d.lower + 2 * shrink, d.upper - 2 * shrink)
    assert again.status == "verified" and "certified region" in again.reason


@pytest.mark.parametrize(("lower", "upper", "message"), [
    (np.zeros(4), np.ones(4), "region shapes"),
    (np.full(5, np.nan), np.ones(5), "not finite"),
    (np.ones(5), np.zeros(5), "exceeds upper"),
])
def test_bad_regions_are_unknown(nets: dict[str, Path], lower: np.ndarray, upper: np.ndarray,
                                 message: str) -> None:
    cert = RuntimeMonitor(nets["safe"], YAML).certify(lower, upper)
    assert cert.status == "unknown" and message in cert.reason


@pytest.mark.parametrize("deadline_s", [float("nan"), float("inf"), 0.0, -1.0])
def test_a_bad_deadline_is_unknown_and_named_without_a_traceback(
    nets: dict[str, Path], deadline_s: float, caplog: pytest.LogCaptureFixture,
) -> None:
    """A sixth tester's deadline_s=nan failed safe but logged a traceback, naming nothing."""
    center = np.array([1.0, 0.0, 0.0, 0.0, 0.8])
    with caplog.at_level("WARNING"):
        cert = RuntimeMonitor(nets["safe"], YAML).certify(center - RADIUS, center + RADIUS,
                                                           deadline_s=deadline_s)
    assert cert.status == "unknown" and f"deadline {deadline_s!r} s" in cert.reason
    assert "Traceback" not in caplog.text


def test_exception_inside_is_unknown(nets: dict[str, Path],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import meetup_ros.verification.runtime as runtime

    def boom(*args: object, **kwargs: object) -> bab.DisjunctOutcome:
        raise RuntimeError("solver exploded")

    monitor = RuntimeMonitor(nets["safe"], YAML)
    monkeypatch.setattr(runtime, "solve_disjunct", boom)
    center = np.array([1.0, 0.0, 0.0, 0.0, 0.8])
    cert = monitor.certify(center - RADIUS, center + RADIUS)
    assert cert.status == "unknown" and "solver exploded" in cert.reason
    assert monitor.stats["unknown"] == 1


def test_a_region_proven_with_a_margin_covers_the_next_slightly_wider_ones(
        nets: dict[str, Path]) -> None:
    """At rest the odometry's sigma moves from tick to tick: a region a little wider than the
    last certified one needed a proof of its own (which missed the deadline under load)."""
    center = np.array([1.0, 0.0, 0.0, 0.0, 0.8])
    wider = RADIUS * 1.05
    alone = RuntimeMonitor(nets["safe"], YAML, region_margin=0.0)
    assert alone.certify(center - RADIUS, center + RADIUS).status == "verified"
    again = alone.certify(center - wider, center + wider)
    assert again.status == "verified" and again.domains >= 1, again

    monitor = RuntimeMonitor(nets["safe"], YAML, region_margin=0.1)
    first = monitor.certify(center - RADIUS, center + RADIUS)
    assert first.status == "verified" and "with a margin of 0.1" in first.reason, first
    assert monitor.stats["proven_with_margin"] == 1
    again = monitor.certify(center - wider, center + wider)
    assert again.status == "verified" and again.domains == 0, again
    assert "inside a certified region" in again.reason
    # What the cache answered for is true: the exact MIP over the wider region agrees.
    d = monitor.prop.disjuncts[0]
    mip = solve_min_max_margin(monitor.network, d.coeffs, d.rhs,
                               np.maximum(center - wider, d.lower),
                               np.minimum(center + wider, d.upper))
    assert mip.objective > 0, mip


def test_a_counterexample_in_the_margin_is_not_a_violation_of_the_region(
        nets: dict[str, Path]) -> None:
    """The margin is only reach: a region that holds is verified even when its widened box
    does not, and the counterexample found there is re-tried when a region reaches it."""
    monitor = RuntimeMonitor(nets["unsafe"], YAML, deadline_s=2.0, region_margin=0.3)
    d = monitor.prop.disjuncts[0]
    lower = np.array([1.5, -0.1, -0.1, -0.1, 0.6])
    upper = np.array([1.8, 0.1, 0.1, 0.1, 1.0])
    pad = 0.3 * (np.minimum(upper, d.upper) - np.maximum(lower, d.lower))

    def exact_margin(lo: np.ndarray, up: np.ndarray) -> float:
        return solve_min_max_margin(monitor.network, d.coeffs, d.rhs, np.maximum(lo, d.lower),
                                    np.minimum(up, d.upper)).objective

    # The premise, by the exact solver: the region holds, the widened box does not.
    assert exact_margin(lower, upper) > 0
    assert exact_margin(lower - pad, upper + pad) < 0
    cert = monitor.certify(lower, upper)
    assert cert.status == "verified" and "margin" not in cert.reason, cert
    assert monitor.stats["proven_with_margin"] == 0
    # The next region is the widened box: its counterexample is re-tried first.
    reach = monitor.certify(lower - pad, upper + pad)
    assert reach.status == "violated" and "previous counterexample" in reach.reason, reach
    x = reach.counterexample_x
    assert x is not None and np.all(x >= lower - pad) and np.all(x <= upper + pad)
    assert monitor.prop.is_unsafe(x, np.asarray(reach.counterexample_y))


@pytest.mark.parametrize("margin", [-0.1, 1.5, float("nan")])
def test_a_bad_margin_is_refused_by_name(nets: dict[str, Path], margin: float) -> None:
    with pytest.raises(VerificationInputError, match="region_margin"):
        RuntimeMonitor(nets["safe"], YAML, region_margin=margin)


def test_a_region_too_wide_for_a_finite_margin_is_certified_as_without_one(
        nets: dict[str, Path]) -> None:
    """A margin of a region ~1e308 wide overflows: the region alone is then searched (its
    answer the same as with no margin), with no overflow warning."""
    lower = np.array([-1e308, -1.0, -1.0, -1.0, 2.5])
    upper = np.array([1e308, 1.0, 1.0, 1.0, 3.0])
    reach = np.array([0.5, -1e308, -1.0, -1.0, 0.5]), np.array([1.0, 1e308, 1.0, 1.0, 0.9])
    for lo, up in ((lower, upper), reach):
        answers = []
        for margin in (0.0, 0.1):
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                cert = RuntimeMonitor(nets["safe"], YAML, region_margin=margin).certify(lo, up)
            answers.append((cert.status, cert.reason))
        assert answers[0] == answers[1], answers


def test_a_start_region_proven_ahead_answers_the_first_ticks_and_holds_by_the_mip(
        nets: dict[str, Path]) -> None:
    """At start-up the node proves the start state's region, widened by the margin, with time
    of its own: the first ticks inside it are cache hits (the pipeline's first proof missed
    its 50 ms on a slower machine). What it proved holds by the exact solver; on a network
    that is unsafe there, the proof fails and its counterexample is re-tried first."""
    center = np.array([1.0, 0.0, 0.0, 0.0, 0.8])
    monitor = RuntimeMonitor(nets["safe"], YAML, region_margin=0.1)
    assert monitor.prove_ahead(center - RADIUS, center + RADIUS, 5.0) == "verified"
    assert monitor.stats["calls"] == 0
    d = monitor.prop.disjuncts[0]
    wide = RADIUS * 1.2  # widened by 10 % of the width on each side
    assert solve_min_max_margin(monitor.network, d.coeffs, d.rhs,
                                np.maximum(center - wide, d.lower),
                                np.minimum(center + wide, d.upper)).objective > 0
    first = monitor.certify(center - RADIUS * 1.15, center + RADIUS * 1.15)
    assert first.status == "verified" and first.domains == 0, first
    assert "inside a certified region" in first.reason
    # Past the widened box: a proof of its own.
    beyond = monitor.certify(center - RADIUS * 1.3, center + RADIUS * 1.3)
    assert beyond.status == "verified" and beyond.domains >= 1, beyond

    unsafe = RuntimeMonitor(nets["unsafe"], YAML, region_margin=0.1)
    start = np.array([0.7, 0.0, 0.0, 0.0, 1.1])
    assert unsafe.prove_ahead(start - RADIUS, start + RADIUS, 5.0) == "violated"
    tick = unsafe.certify(start - RADIUS, start + RADIUS)
    assert tick.status == "violated", tick
    x = tick.counterexample_x
    assert x is not None and unsafe.prop.is_unsafe(x, np.asarray(tick.counterexample_y))
    with pytest.raises(VerificationInputError, match="region lower"):
        unsafe.prove_ahead(start + RADIUS, start - RADIUS, 5.0)
    with pytest.raises(VerificationInputError, match="budget_s nan"):
        unsafe.prove_ahead(start - RADIUS, start + RADIUS, float("nan"))
