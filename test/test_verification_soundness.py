"""Soundness of every bound and answer against independent oracles (sampling, the MIP).

Random small ReLU networks and boxes with fixed seeds: interval, CROWN (plain, alpha, every
intermediate mode, with ReLU splits) and LP lower bounds must lie below the sampled minimum
and below the MIP optimum; the MIP optimum must be attained by its own solution; every
"unsat" of branch and bound is checked by the MIP and every "sat" by a forward pass.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from meetup_ros.verification.bab import BabConfig, verify
from meetup_ros.verification.bounds.crown import crown_bounds
from meetup_ros.verification.bounds.interval import interval_bounds
from meetup_ros.verification.bounds.lp import lp_lower_bound
from meetup_ros.verification.examples import random_relu_network
from meetup_ros.verification.falsify import spec_layers, spec_rounding
from meetup_ros.verification.mip import solve_min_max_margin
from meetup_ros.verification.spec import Disjunct, Property

TOL = 1e-7
CASES = [
    ([3, 8, 8, 2], 0), ([4, 10, 6, 3], 1), ([2, 12, 1], 2), ([5, 6, 6, 6, 2], 3),
    ([3, 16, 2], 4), ([6, 8, 8, 4], 5),
]


def _box(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    center = rng.uniform(-1, 1, n)
    radius = rng.uniform(0.05, 1.0, n)
    return center - radius, center + radius


def _samples(rng: np.random.Generator, lower: np.ndarray, upper: np.ndarray,
             count: int = 20000) -> np.ndarray:
    x = rng.uniform(lower, upper, (count, lower.size))
    corners = np.where(rng.random((200, lower.size)) < 0.5, lower, upper)
    return np.concatenate([x, corners])


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.mark.parametrize(("sizes", "seed"), CASES)
def test_bounds_below_samples_and_mip(sizes: list[int], seed: int) -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(100 + seed)
    net = random_relu_network(sizes, seed)
    lower, upper = _box(rng, sizes[0])
    m = sizes[-1]
    coeffs = rng.normal(size=(2, m))
    rhs = rng.normal(size=2)
    layers = spec_layers(net, coeffs, rhs)
    lo_t, up_t = torch.as_tensor(lower)[None], torch.as_tensor(upper)[None]
    x = _samples(rng, lower, upper)
    margins = net.forward(x) @ coeffs.T - rhs
    sampled_min = margins.min(0)  # per row
    bounds = {"interval": interval_bounds(layers, lo_t, up_t)[1][0][0].numpy()}
    for mode in ("forward", "backward", "hybrid"):
        bounds[f"crown-{mode}"] = crown_bounds(layers, lo_t, up_t, intermediate=mode
                                               ).lower[0].numpy()
    alpha = crown_bounds(layers, lo_t, up_t, alpha_steps=15)
    bounds["alpha"] = alpha.lower[0].numpy()
    assert alpha.slopes is not None and alpha.slopes.shape == (1, 2, sum(sizes[1:-1]))
    # A warm start from any slopes (a parent domain's; -1 = none stored) is still sound.
    init = torch.as_tensor(rng.uniform(-1.0, 1.0, (1, 2, sum(sizes[1:-1]))))
    init = torch.where(init < -0.5, torch.full_like(init, -1.0), init.abs())
    bounds["alpha-warm"] = crown_bounds(layers, lo_t, up_t, alpha_steps=3,
                                        alpha_init=init).lower[0].numpy()
    bounds["alpha-rewarm"] = crown_bounds(layers, lo_t, up_t, alpha_steps=3,
                                          alpha_init=alpha.slopes).lower[0].numpy()
    for name, b in bounds.items():
        assert np.all(b <= sampled_min + TOL), (name, b, sampled_min)
    # The same bounds carrying the float32 rounding (what a proof uses): below the ones in
    # exact arithmetic, and below the rounded MIP's optimum (all evaluations within it).
    rnd = spec_rounding(net, coeffs)
    rounded = {f"crown-{mode}": crown_bounds(layers, lo_t, up_t, intermediate=mode,
                                             rounding=rnd).lower[0].numpy()
               for mode in ("forward", "backward", "hybrid")}
    rounded["alpha"] = crown_bounds(layers, lo_t, up_t, alpha_steps=15,
                                    rounding=rnd).lower[0].numpy()
    for name, b in rounded.items():
        assert np.all(b <= bounds[name] + 1e-12), name
    # Exact per-row optimum from the MIP, attained by its own solution.
    for row in range(2):
        mip = solve_min_max_margin(net, coeffs[row:row + 1], rhs[row:row + 1], lower, upper,
                                   exact=True)
        assert mip.x is not None and mip.dual_bound > -np.inf
        at_x = float(net.forward(mip.x) @ coeffs[row] - rhs[row])
        assert at_x == pytest.approx(mip.objective, abs=1e-5)
        assert mip.objective <= sampled_min[row] + 1e-6
        lp = lp_lower_bound(net, coeffs[row:row + 1], rhs[row:row + 1], lower, upper,
                            exact=True)
        assert lp.dual_bound <= mip.objective + 1e-6
        for name, b in bounds.items():
            assert b[row] <= mip.objective + 1e-6, (name, row)
        # The triangle LP over the same pre-activation bounds is at least as tight as CROWN.
        assert lp.dual_bound >= bounds["crown-hybrid"][row] - 1e-5
        # With the rounding: a little below the exact optimum, never above it.
        mip_r = solve_min_max_margin(net, coeffs[row:row + 1], rhs[row:row + 1], lower, upper)
        assert mip_r.dual_bound <= mip.objective + 1e-6
        assert mip_r.objective >= mip.dual_bound - 1e-3
        for name, b in rounded.items():
            assert b[row] <= mip_r.objective + 1e-6, (name, row)
    # alpha-CROWN never loses to plain CROWN (it keeps the best bound seen).
    assert np.all(bounds["alpha"] >= bounds["crown-hybrid"] - 1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_split_bounds_below_samples_in_the_split_region(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    net = random_relu_network([3, 10, 10, 2], 10 + seed)
    lower, upper = _box(rng, 3)
    coeffs = rng.normal(size=(1, 2))
    layers = spec_layers(net, coeffs, np.zeros(1))
    lo_t, up_t = torch.as_tensor(lower)[None], torch.as_tensor(upper)[None]
    base = crown_bounds(layers, lo_t, up_t)
    # Split two unstable neurons of the first layer and one of the second.
    splits = [torch.zeros(1, 10, dtype=torch.int8) for _ in range(2)]
    for layer, count in ((0, 2), (1, 1)):
        unstable = torch.nonzero((base.pre_lower[layer][0] < 0) & (base.pre_upper[layer][0] > 0))
        for j in unstable.flatten()[:count].tolist():
            splits[layer][0, j] = 1 if rng.random() < 0.5 else -1
    res = crown_bounds(layers, lo_t, up_t, splits)
    x = _samples(rng, lower, upper, 50000)
    h = x
    keep = np.ones(len(x), dtype=bool)
    for i, (W, b) in enumerate(zip(net.weights[:-1], net.biases[:-1], strict=True)):
        z = h @ W.T + b
        s = splits[i][0].numpy()
        keep &= np.all((s <= 0) | (z >= 0), axis=1) & np.all((s >= 0) | (z <= 0), axis=1)
        h = np.maximum(z, 0)
    if not keep.any():
        return  # empty split region: any bound is sound; nothing to compare
    value = (h[keep] @ net.weights[-1].T + net.biases[-1]) @ coeffs.T
    assert float(res.lower[0, 0]) <= float(value.min()) + TOL
    mip = solve_min_max_margin(net, coeffs, np.zeros(1), lower, upper,
                               splits=[s[0].numpy() for s in splits])
    if mip.status != "unsat":
        assert float(res.lower[0, 0]) <= mip.objective + 1e-6


def _random_property(rng: np.random.Generator, net, lower, upper, k: int) -> Property:
    """A conjunction of k constraints whose thresholds sit near the sampled range."""
    coeffs = rng.normal(size=(k, net.n_outputs))
    y = net.forward(rng.uniform(lower, upper, (2000, lower.size)))
    values = y @ coeffs.T
    # Thresholds between the sampled minimum and a bit below it: some sat, some unsat.
    rhs = values.min(0) + rng.uniform(-0.15, 0.15, k) * (values.max(0) - values.min(0))
    return Property((Disjunct(lower, upper, coeffs, rhs),), net.n_inputs, net.n_outputs)


@pytest.mark.parametrize(("split", "alpha_min_open"),
                         [("input", 512), ("relu", 512), ("input", 0), ("relu", 0)])
def test_bab_answers_agree_with_mip_and_forward_pass(split: str, alpha_min_open: int) -> None:
    """alpha_min_open=0: warm-started alpha-CROWN on every batch (else only on big searches)."""
    rng = np.random.default_rng(7 if split == "input" else 8)
    seen = {"sat": 0, "unsat": 0}
    for case in range(12):
        sizes = [[3, 8, 8, 3], [2, 10, 2], [4, 6, 6, 2]][case % 3]
        net = random_relu_network(sizes, 50 + case)
        lower, upper = _box(rng, sizes[0])
        prop = _random_property(rng, net, lower, upper, k=1 + case % 3)
        config = BabConfig(split=split, seed=case, alpha_min_open=alpha_min_open)
        result = verify(net, prop, timeout_s=20.0, config=config)
        d = prop.disjuncts[0]
        mip = solve_min_max_margin(net, d.coeffs, d.rhs, d.lower, d.upper)
        if result.status == "unsat":
            assert mip.objective > -1e-6, (case, mip)
        elif result.status == "sat":
            assert result.x is not None and result.y is not None
            assert d.contains_input(result.x)
            y = net.forward(result.x)
            np.testing.assert_allclose(y, result.y, atol=1e-12)
            assert np.all(d.margins(y) <= 0)
            assert mip.objective <= 1e-6
        else:
            pytest.fail(f"case {case}: {result.status} {result.stats}")
        seen[result.status] += 1
    assert seen["sat"] >= 2 and seen["unsat"] >= 2, seen


def test_disjunction_sat_in_second_disjunct_only() -> None:
    net = random_relu_network([2, 8, 2], 3)
    lower, upper = -np.ones(2), np.ones(2)
    y = net.forward(np.random.default_rng(0).uniform(-1, 1, (5000, 2)))
    top = y[:, 0].max()
    never = Disjunct(lower, upper, np.array([[-1.0, 0.0]]), np.array([-(top + 10.0)]))
    sometimes = Disjunct(lower, upper, np.array([[-1.0, 0.0]]), np.array([-(top - 0.01)]))
    prop = Property((never, sometimes), 2, 2)
    result = verify(net, prop, 10.0)
    assert result.status == "sat" and result.stats["disjunct"] == 1
    assert result.x is not None
    assert prop.is_unsafe(result.x, net.forward(result.x))
    assert verify(net, Property((never,), 2, 2), 10.0).status == "unsat"


@pytest.mark.parametrize("seed", [90, 91])
def test_a_paused_search_resumes_on_the_path_it_would_take_alone(seed: int) -> None:
    """verify shares its time between disjuncts in rounds; each round resumes a disjunct's
    solver. Paused after every step, the search must split the same domains and reach the same
    answer as one run straight through (time-paced parts off: they follow the clock)."""
    from meetup_ros.verification.bab import _solver_for

    net = random_relu_network([3, 16, 16, 2], seed)
    lower, upper = -np.ones(3), np.ones(3)
    coeffs = np.array([[1.0, -1.0]])
    optimum = solve_min_max_margin(net, coeffs, np.zeros(1), lower, upper).objective
    rhs = np.array([optimum - 1e-3])  # unsafe set empty by 1e-3: a proof of some depth
    config = BabConfig(mip_share=0.0, screen_every_s=0.0, alpha_min_open=64, batch_size=32)
    deadline = time.monotonic() + 60.0
    straight = _solver_for(net, coeffs, rhs, lower, upper, deadline, config).run()
    solver = _solver_for(net, coeffs, rhs, lower, upper, deadline, config)
    frontier, calls = None, 0
    while True:
        out = solver.run(frontier, pause_at=0.0)
        calls += 1
        if out.status != "timeout":
            break
        assert out.frontier is not None and "paused" in out.reason
        frontier = out.frontier
    assert straight.status == out.status == "unsat"
    assert calls > 5, calls  # it was paused
    assert out.domains == straight.domains > 500


@pytest.mark.parametrize("split", ["input", "relu"])
def test_mip_probes_decide_tight_properties_soundly(split: str) -> None:
    """Thresholds moved to 1e-4 on either side of the exact optimum, falsifier off, MIP probes
    allowed all the time: every answer must agree with the MIP oracle and the forward pass.
    """
    rng = np.random.default_rng(17 if split == "input" else 18)
    seen = {"sat": 0, "unsat": 0}
    for case in range(6):
        sizes = [[3, 8, 8, 3], [4, 6, 6, 2], [2, 10, 2]][case % 3]
        net = random_relu_network(sizes, 70 + case)
        lower, upper = _box(rng, sizes[0])
        d0 = _random_property(rng, net, lower, upper, k=1 + case % 3).disjuncts[0]
        optimum = solve_min_max_margin(net, d0.coeffs, d0.rhs, lower, upper).objective
        for gap in (-1e-4, 1e-4):
            d = Disjunct(lower, upper, d0.coeffs, d0.rhs + optimum - gap)
            prop = Property((d,), net.n_inputs, net.n_outputs)
            config = BabConfig(split=split, seed=case, falsify_samples=0, mip_share=1.0)
            result = verify(net, prop, timeout_s=20.0, config=config)
            if result.status == "sat":
                assert gap < 0, (case, "sat where the minimum is +1e-4")
                assert result.x is not None and d.contains_input(result.x)
                assert np.all(d.margins(net.forward(result.x)) <= 0)
            elif result.status == "unsat":
                assert gap > 0, (case, "unsat where the minimum is -1e-4")
            else:
                pytest.fail(f"case {case} gap {gap}: {result.status} {result.stats}")
            seen[result.status] += 1
    assert seen["sat"] >= 4 and seen["unsat"] >= 4, seen


@pytest.mark.parametrize("seed", range(3))
def test_screened_falsifier_point_is_in_the_box_and_not_below_the_exact_minimum(
        seed: int) -> None:
    """The screened restarts (Adam from the best of many uniform points) return a point of
    the box whose max-margin is the value they report, never below the MIP's exact minimum,
    and at least as low as the best of a plain uniform sample of the same size."""
    from meetup_ros.verification.falsify import forward_layers, pgd_search

    rng = np.random.default_rng(300 + seed)
    net = random_relu_network([3, 10, 10, 3], 30 + seed)
    lower, upper = _box(rng, 3)
    coeffs = rng.normal(size=(2, 3))
    rhs = rng.normal(size=2)
    layers = spec_layers(net, coeffs, rhs)
    lo, up = torch.as_tensor(lower), torch.as_tensor(upper)
    x, value = pgd_search(layers, lo, up, 64, 40, torch.Generator().manual_seed(seed),
                          screen=4096)
    assert bool(((x >= lo) & (x <= up)).all())
    again = forward_layers(layers, x[None]).max(-1).values[0]
    assert float(again) == pytest.approx(float(value), abs=1e-12)
    exact = solve_min_max_margin(net, coeffs, rhs, lower, upper)
    assert exact.status in ("sat", "unsat", "timeout") and exact.x is not None
    assert float(value) >= exact.objective - 1e-6
    plain = rng.uniform(lower, upper, (4096, 3))
    assert float(value) <= float((net.forward(plain) @ coeffs.T - rhs).max(1).min()) + 1e-12


@pytest.mark.parametrize("half_width", [1e40, 1e154, 1e200])
def test_boxes_too_large_for_float64_are_never_proven(half_width: float) -> None:
    """The shipped governor against its clearance property over a huge box that contains a
    counterexample (the same box at +-1e3 is "sat"): the bounds overflow, and an overflowed
    bound (NaN) once counted as proven, so +-1e200 came out "unsat" offline and a 1e307
    odometry variance gave a verified 1 m/s at run time (a tester's finding). Now
    undecided, never proven."""
    from pathlib import Path

    from meetup_ros.verification.network import load_network
    from meetup_ros.verification.runtime import RuntimeMonitor
    from meetup_ros.verification.spec import load_property_yaml

    repo = Path(__file__).resolve().parent.parent
    network = load_network(repo / "models" / "governor.onnx")
    clearance = load_property_yaml(repo / "config" / "governor_clearance_property.yaml")
    lower = np.array([-half_width] * 4 + [-half_width])
    upper = np.array([half_width] * 4 + [0.5])
    box = Property(tuple(Disjunct(lower, upper, d.coeffs, d.rhs) for d in clearance.disjuncts),
                   5, 3)
    assert verify(network, box, timeout_s=20).status != "unsat"
    small = Property(tuple(Disjunct(np.maximum(lower, -1e3), np.minimum(upper, 1e3), d.coeffs,
                                    d.rhs) for d in clearance.disjuncts), 5, 3)
    assert verify(network, small, timeout_s=20).status == "sat"
    monitor = RuntimeMonitor(repo / "models" / "governor.onnx", clearance)
    state = np.array([0.0, 0.0, 0.0, 0.0, 1.0])
    radius = np.array([half_width] * 4 + [0.75])
    assert monitor.certify(state - radius, state + radius, deadline_s=1.0).status != "verified"


# ---- domains too small to split must not lose the rest of the search --------------------

# A 1-input network (exact in float32) that is >= 2^-9 everywhere but in a dip 2^-14 wide at
# DIP_X, where it reaches -2^-15 (a real counterexample of "y <= 0", which random restarts
# miss: the gradient is flat outside the dip), and that carries, near 1.0625, two equal units
# of height 2^16 that cancel exactly: there the float32 rounding allowance of every bound is
# far above 2^-9, so the domains there shrink until they are too small to split.
DIP_X = 0.28125


def _dip_network():
    from meetup_ros.verification.network import Network

    half, floor = 2.0 ** -14, 2.0 ** -9
    bump_at, bump_half, bump_slope = 1.0625, 2.0 ** -5, 2.0 ** 21
    depth = floor * (1 + 2.0 ** -6) / half  # floor - depth * half = -2^-15 at DIP_X
    W1 = np.array([[1.0], [1.0], [1.0], [1.0], [-1.0]])
    b1 = np.array([half - DIP_X, -DIP_X, -DIP_X - half, -bump_at, bump_at])
    # hat = r0 - 2 r1 + r2 (peak `half` at DIP_X); bump = slope * (bump_half - |x - bump_at|)
    W2 = np.array([[1.0, -2.0, 1.0, 0.0, 0.0],
                   [0.0, 0.0, 0.0, -bump_slope, -bump_slope],
                   [0.0, 0.0, 0.0, -bump_slope, -bump_slope]])
    b2 = np.array([0.0, bump_slope * bump_half, bump_slope * bump_half])
    W3 = np.array([[-depth, 1.0, -1.0]])
    return Network([W1, W2, W3], [b1, b2, np.array([floor])], source="dip",
                   source_kind="memory")


def _dip_property(lower: float, upper: float) -> Property:
    return Property((Disjunct(np.array([lower]), np.array([upper]), np.array([[1.0]]),
                              np.array([0.0])),), 1, 1)


def test_the_dip_network_is_what_it_claims() -> None:
    net = _dip_network()
    y = net.forward(np.array([[DIP_X]]))[0, 0]
    assert y == -(2.0 ** -15)
    xs = np.linspace(-0.1, 1.1, 20001)
    ys = net.forward(xs[:, None])[:, 0]
    assert np.all(ys[np.abs(xs - DIP_X) > 2.0 ** -14] >= 2.0 ** -9 - 1e-12)
    d = _dip_property(0.0, 1.0).disjuncts[0]
    assert solve_min_max_margin(net, d.coeffs, d.rhs, d.lower, d.upper).objective < 0


def test_domains_too_small_to_split_keep_every_open_domain() -> None:
    """A tester's wrong "verified": with the MIP off (the runtime monitor), a search that
    reached domains too small to split handed back those alone as its open domains; resumed
    over a region inside its box, the rest (the dip) was gone, and the region was "unsat"."""
    from meetup_ros.verification.bab import solve_disjunct
    from meetup_ros.verification.runtime import RUNTIME_CONFIG

    net = _dip_network()
    d = _dip_property(-0.1, 1.1).disjuncts[0]
    dip = np.array([DIP_X])
    frontier = None
    # Resumed rounds, as verify and the monitor's ticks run it: the open domains handed back
    # after each must still cover the counterexample, whichever way the round ended.
    for _ in range(12):
        out = solve_disjunct(net, d.coeffs, d.rhs, d.lower, d.upper, time.monotonic() + 0.2,
                             RUNTIME_CONFIG, frontier)
        assert out.status != "unsat", out
        if out.status == "sat":
            break
        assert out.frontier is not None and len(out.frontier.restrict(dip, dip)) > 0, (
            f"the domain around the counterexample was dropped ({out.reason})")
        frontier = out.frontier
    region = solve_disjunct(net, d.coeffs, d.rhs, np.array([0.0]), np.array([1.0]),
                            time.monotonic() + 0.5, RUNTIME_CONFIG,
                            None if frontier is None else frontier.restrict(np.array([0.0]),
                                                                            np.array([1.0])))
    assert region.status != "unsat", region


@pytest.mark.parametrize("region_margin", [0.0, 0.1])
def test_the_runtime_monitor_never_verifies_the_dip(region_margin: float) -> None:
    from meetup_ros.verification.runtime import RuntimeMonitor

    monitor = RuntimeMonitor(_dip_network(), _dip_property(-10.0, 10.0), deadline_s=0.2,
                             region_margin=region_margin)
    for lower, upper in ((-0.1, 1.1), (0.0, 1.0), (DIP_X - 1e-3, DIP_X + 1e-3),
                         (DIP_X, DIP_X)):
        cert = monitor.certify(np.array([lower]), np.array([upper]))
        assert cert.status != "verified", (lower, upper, cert)


def test_offline_verify_never_proves_the_dip() -> None:
    result = verify(_dip_network(), _dip_property(-0.1, 1.1), timeout_s=3.0)
    assert result.status != "unsat", result
