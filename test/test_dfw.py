"""DFW: one step against the closed form computed by hand, convergence, state, bad inputs."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import pytest
import torch

from meetup_ros.optim import DFW, MultiClassHingeLoss
from meetup_ros.training import checkpoint

EPS = 1e-5
# (foreach, host_gamma): multi-tensor or per-tensor kernels, gamma as a number or a tensor
KERNELS = [(True, None), (True, False), (False, None), (False, False)]
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(
        not torch.cuda.is_available(), reason="no CUDA device on this machine")),
]


def linear_step(w0: list[float], a: list[float], *, eta: float, momentum: float = 0.0,
                weight_decay: float = 0.0, steps: int = 1, device: str = "cpu",
                foreach: bool = True, host_gamma: bool | None = None,
                absolute: bool = False) -> tuple[torch.Tensor, list[float]]:
    """Run DFW on the loss ``a . w`` (or ``|a . w|``) from ``w0``; returns (w, gammas)."""
    w = torch.tensor(w0, dtype=torch.float64, device=device, requires_grad=True)
    a_t = torch.tensor(a, dtype=torch.float64, device=device)
    opt = DFW([w], eta=eta, momentum=momentum, weight_decay=weight_decay, foreach=foreach,
              host_gamma=host_gamma)
    gammas = []

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (a_t * w).sum()
        loss = loss.abs() if absolute else loss
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
        assert opt.last_gamma is not None
        gammas.append(float(opt.last_gamma))
    return w.detach().cpu(), gammas


# ---- one step equals the closed form, on numbers worked out by hand ----
# w0 = (1, 2), loss = 3 w_0 + w_1: l = 5, g = (3, 1), ||g||^2 = 10, <w, g> = 5.

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("foreach", [True, False])
def test_gamma_clipped_at_one(device: str, foreach: bool) -> None:
    # gamma = 5 / (0.1 * 10) = 5 -> 1: a plain SGD step of size eta
    w, gammas = linear_step([1.0, 2.0], [3.0, 1.0], eta=0.1, device=device, foreach=foreach)
    assert gammas == [1.0]
    torch.testing.assert_close(w, torch.tensor([0.7, 1.9], dtype=torch.float64))


@pytest.mark.parametrize("foreach", [True, False])
def test_gamma_inside(foreach: bool) -> None:
    # eta = 1: gamma = 5 / (10 + eps) = 0.4999995; w = w0 - gamma g
    w, gammas = linear_step([1.0, 2.0], [3.0, 1.0], eta=1.0, foreach=foreach)
    gamma = 5.0 / (10.0 + EPS)
    assert gammas[0] == pytest.approx(gamma, rel=1e-12)
    torch.testing.assert_close(w, torch.tensor([1 - 3 * gamma, 2 - gamma], dtype=torch.float64))
    # the step lands where the linearised loss is exactly 0: a . w = 5 - gamma * 10 ~ 0
    assert float((torch.tensor([3.0, 1.0], dtype=torch.float64) * w).sum()) == pytest.approx(
        0.0, abs=1e-4)


@pytest.mark.parametrize(("foreach", "host_gamma"), [(True, None), (True, False), (False, None)])
def test_gamma_clipped_at_zero_with_weight_decay(foreach: bool, host_gamma: bool | None) -> None:
    # loss 0.05 (w_0 + w_1): l = 0.15, g = (0.05, 0.05), <w, g> = 0.15; eta = 2, lambda = 0.75:
    # numerator 0.15 - 2 * 0.75 * 0.15 = -0.075 < 0 -> gamma = 0; w = w0 - eta lambda w0 = -w0/2
    w, gammas = linear_step([1.0, 2.0], [0.05, 0.05], eta=2.0, weight_decay=0.75,
                            foreach=foreach, host_gamma=host_gamma)
    assert gammas == [0.0]
    torch.testing.assert_close(w, torch.tensor([-0.5, -1.0], dtype=torch.float64))


@pytest.mark.parametrize(("foreach", "host_gamma"), [(True, None), (True, False), (False, None)])
def test_weight_decay_inside(foreach: bool, host_gamma: bool | None) -> None:
    # eta = 0.5, lambda = 0.2: numerator 5 - 0.5 * 0.2 * 5 = 4.5, denominator 0.5 * 10 = 5
    # gamma = 4.5 / (5 + eps); w = w0 - 0.5 (0.2 w0 + gamma g)
    w, gammas = linear_step([1.0, 2.0], [3.0, 1.0], eta=0.5, weight_decay=0.2, foreach=foreach,
                            host_gamma=host_gamma)
    gamma = 4.5 / (5.0 + EPS)
    assert gammas[0] == pytest.approx(gamma, rel=1e-12)
    expected = [1 - 0.5 * (0.2 * 1 + gamma * 3), 2 - 0.5 * (0.2 * 2 + gamma * 1)]
    torch.testing.assert_close(w, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("foreach", "host_gamma"), KERNELS)
def test_momentum_two_steps(device: str, foreach: bool, host_gamma: bool | None) -> None:
    # step 1 (gamma = 1): u1 = g = (3, 1), z1 = u1, w1 = w0 - eta (u1 + mu z1) = w0 - 0.19 g
    # step 2 at w1 = (0.43, 1.81): l = 3.1, gamma = 3.1 / (0.1 * 10) -> 1, u2 = g,
    # z2 = 0.9 g + g = 1.9 g, w2 = w1 - 0.1 (g + 0.9 * 1.9 g) = w1 - 0.271 g
    w, gammas = linear_step([1.0, 2.0], [3.0, 1.0], eta=0.1, momentum=0.9, steps=2,
                            device=device, foreach=foreach, host_gamma=host_gamma)
    assert gammas == [1.0, 1.0]
    total = 0.19 + 0.271
    torch.testing.assert_close(w, torch.tensor([1 - 3 * total, 2 - total],
                                               dtype=torch.float64))


@pytest.mark.parametrize(("foreach", "host_gamma"), KERNELS)
def test_momentum_with_partial_gamma_matches_formula(foreach: bool,
                                                     host_gamma: bool | None) -> None:
    """Three steps with gamma < 1, weight decay and momentum against a scalar re-derivation."""
    # loss |a . w| (>= 0, as DFW requires): l = |s|, g = sign(s) a, <w, g> = |s|, ||g||^2 = 10
    eta, mu, lam = 0.2, 0.5, 0.1
    a = [3.0, 1.0]
    w_ref = [1.0, 2.0]
    z = None
    for _ in range(3):
        s = a[0] * w_ref[0] + a[1] * w_ref[1]
        sign = 1.0 if s > 0 else -1.0
        gamma = (abs(s) - eta * lam * abs(s)) / (eta * 10.0 + EPS)
        gamma = min(max(gamma, 0.0), 1.0)
        u = [lam * w_ref[i] + gamma * sign * a[i] for i in range(2)]
        z = u if z is None else [mu * z[i] + u[i] for i in range(2)]
        w_ref = [w_ref[i] - eta * (u[i] + mu * z[i]) for i in range(2)]
    w, gammas = linear_step([1.0, 2.0], a, eta=eta, momentum=mu, weight_decay=lam, steps=3,
                            foreach=foreach, host_gamma=host_gamma, absolute=True)
    assert sum(0.0 < g < 1.0 for g in gammas) >= 2, gammas
    torch.testing.assert_close(w, torch.tensor(w_ref, dtype=torch.float64))


def test_one_gamma_shared_by_parameter_groups() -> None:
    # two groups with their own eta: gamma = l / (eta_1 ||g_1||^2 + eta_2 ||g_2||^2)
    w1 = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    w2 = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    opt = DFW([{"params": [w1], "eta": 0.5}, {"params": [w2]}], eta=1.0, momentum=0.0)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = 2 * w1.sum() + w2.sum()  # l = 3, g1 = 2, g2 = 1
        loss.backward()
        return loss

    opt.step(closure)
    gamma = 3.0 / (0.5 * 4 + 1.0 * 1 + EPS)
    assert float(opt.last_gamma) == pytest.approx(gamma, rel=1e-12)  # type: ignore[arg-type]
    assert float(w1.detach()) == pytest.approx(1 - 0.5 * gamma * 2)
    assert float(w2.detach()) == pytest.approx(1 - 1.0 * gamma * 1)


# ---- convergence on a convex multi-class hinge problem ----

def test_convex_hinge_problem_converges() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 6, generator=g, dtype=torch.float64)
    w_true = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = (x @ w_true).argmax(1)
    model = torch.nn.Linear(6, 4, dtype=torch.float64)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    loss_fn = MultiClassHingeLoss()
    opt = DFW(model.parameters(), eta=1.0, momentum=0.9)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        return loss

    first = float(closure())
    losses = [float(opt.step(closure)) for _ in range(300)]
    assert first == pytest.approx(1.0)  # all-zero scores: the margin is violated by 1
    assert losses[-1] < 0.05 * first
    accuracy = float((model(x).argmax(1) == y).double().mean())
    assert accuracy > 0.97


# ---- state ----

def _train(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
           y: torch.Tensor, steps: int) -> None:
    loss_fn = MultiClassHingeLoss(smoothing=0.1)
    for _ in range(steps):
        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            return loss
        opt.step(closure)


def test_state_dict_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    opt = DFW(model.parameters(), eta=0.3, momentum=0.8, weight_decay=1e-3)
    _train(model, opt, x, y, 3)
    checkpoint.save(tmp_path / "opt.pt", {"model": model.state_dict(),
                                          "optimizer": opt.state_dict()})
    clone = copy.deepcopy(model)
    state = checkpoint.load(tmp_path / "opt.pt")  # weights_only: no pickled objects
    clone.load_state_dict(state["model"])
    clone_opt = DFW(clone.parameters(), eta=1.0)  # hyper-parameters come from the state
    clone_opt.load_state_dict(state["optimizer"])
    assert clone_opt.param_groups[0]["eta"] == 0.3
    assert clone_opt.param_groups[0]["momentum"] == 0.8
    assert len(clone_opt.state) == len(opt.state) == 4
    _train(model, opt, x, y, 2)
    _train(clone, clone_opt, x, y, 2)
    for a, b in zip(model.parameters(), clone.parameters(), strict=True):
        assert torch.equal(a, b)


# ---- bad hyper-parameters ----

BAD = [
    ({"eta": 0.0}, "eta", "0.0"),
    ({"eta": -0.1}, "eta", "-0.1"),
    ({"eta": math.nan}, "eta", "nan"),
    ({"eta": math.inf}, "eta", "inf"),
    ({"eta": "0.1"}, "eta", "'0.1'"),
    ({"eta": 0.1, "momentum": 1.0}, "momentum", "1.0"),
    ({"eta": 0.1, "momentum": -0.5}, "momentum", "-0.5"),
    ({"eta": 0.1, "weight_decay": -1e-4}, "weight_decay", "-0.0001"),
    ({"eta": 0.1, "eps": 0.0}, "eps", "0.0"),
]


@pytest.mark.parametrize(("kwargs", "name", "shown"), BAD)
def test_bad_hyper_parameters(kwargs: dict[str, object], name: str, shown: str) -> None:
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match=rf"{name}.*{re.escape(shown)}"):
        DFW([w], **kwargs)  # type: ignore[arg-type]


def test_bad_group_hyper_parameter() -> None:
    w1, w2 = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match=r"momentum.*1\.5"):
        DFW([{"params": [w1]}, {"params": [w2], "momentum": 1.5}], eta=0.1)


def test_step_needs_closure() -> None:
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="closure"):
        DFW([w], eta=0.1).step()


def test_no_data_attribute_tricks() -> None:
    source = Path(__file__).resolve().parent.parent / "meetup_ros" / "optim" / "dfw.py"
    assert ".data" not in source.read_text()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_step_does_not_synchronise() -> None:
    model = torch.nn.Linear(4, 3).cuda()
    x, y = torch.randn(16, 4, device="cuda"), torch.randint(0, 3, (16,), device="cuda")
    opt = DFW(model.parameters(), eta=0.1, weight_decay=1e-4)
    loss_fn = MultiClassHingeLoss()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        return loss

    opt.step(closure)  # warm-up (lazy initialisation may synchronise)
    torch.cuda.set_sync_debug_mode("error")
    try:
        opt.step(closure)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert opt.last_gamma is not None and opt.last_gamma.device.type == "cuda"


@pytest.mark.parametrize(("foreach", "host_gamma"), KERNELS)
def test_gamma_zero_with_momentum_and_weight_decay(foreach: bool,
                                                   host_gamma: bool | None) -> None:
    # gamma = 0 every step (as in the clipped-at-zero case): u = lambda w, pure decay with
    # Nesterov momentum: z1 = lambda w0, w1 = w0 - eta (1 + mu) lambda w0
    w, gammas = linear_step([1.0, 2.0], [0.05, 0.05], eta=2.0, momentum=0.5,
                            weight_decay=0.75, foreach=foreach, host_gamma=host_gamma)
    assert gammas == [0.0]
    torch.testing.assert_close(w, torch.tensor([1.0, 2.0], dtype=torch.float64)
                               * (1 - 2.0 * 1.5 * 0.75))


def test_kernels_agree_on_an_mlp() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(32, 5), torch.randint(0, 3, (32,))
    base = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    results = []
    for foreach, host_gamma in KERNELS:
        model = copy.deepcopy(base)
        opt = DFW(model.parameters(), eta=0.5, momentum=0.9, weight_decay=1e-2,
                  foreach=foreach, host_gamma=host_gamma)
        _train(model, opt, x, y, 4)
        results.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    for other in results[1:]:
        torch.testing.assert_close(other, results[0])


# ---- momentum buffers: parameters getting their first gradient at different steps ----

@pytest.mark.parametrize(("foreach", "host_gamma"), KERNELS)
def test_first_gradient_of_one_parameter_keeps_the_others_momentum(
        foreach: bool, host_gamma: bool | None) -> None:
    # a has gradient (3, 1) at both steps, b (1, 1) from step 2 on: a's buffer is
    # mu gamma_1 g_a + gamma_2 g_a (not restarted when b's is created), b's is gamma_2 g_b
    a = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([1.0, 1.0], dtype=torch.float64, requires_grad=True)
    opt = DFW([a, b], eta=0.1, momentum=0.9, foreach=foreach, host_gamma=host_gamma)
    gammas = []
    for with_b in (False, True):
        def closure(with_b: bool = with_b) -> torch.Tensor:
            opt.zero_grad()
            loss = 3 * a[0] + a[1] + (b.sum() if with_b else 0.0)
            loss.backward()
            return loss
        opt.step(closure)
        gammas.append(float(opt.last_gamma))  # type: ignore[arg-type]
    g_a = torch.tensor([3.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(opt.state[a]["momentum_buffer"],
                               (0.9 * gammas[0] + gammas[1]) * g_a)
    torch.testing.assert_close(opt.state[b]["momentum_buffer"],
                               gammas[1] * torch.ones(2, dtype=torch.float64))


def _partial_gradients(foreach: bool, host_gamma: bool | None) -> list[torch.Tensor]:
    torch.manual_seed(0)
    named = {n: torch.randn(3, dtype=torch.float64, requires_grad=True) for n in "abcd"}
    x = torch.randn(3, dtype=torch.float64)
    opt = DFW([{"params": [named["a"], named["b"]]},
               {"params": [named["c"], named["d"]], "eta": 0.05, "momentum": 0.5,
                "weight_decay": 0.01}],
              eta=0.1, momentum=0.9, weight_decay=1e-3, foreach=foreach, host_gamma=host_gamma)
    # b, c, d get their first gradient at later steps; a has none at step 4
    for used in ("a", "ac", "abd", "bcd", "abcd", "abcd"):
        def closure(used: str = used) -> torch.Tensor:
            opt.zero_grad()
            loss = 1.0 + sum((named[n] @ x).abs() for n in used)
            loss.backward()  # type: ignore[union-attr]
            return loss  # type: ignore[return-value]
        opt.step(closure)
    return [t.detach() for t in named.values()] + [opt.state[t]["momentum_buffer"]
                                                   for t in named.values()]


@pytest.mark.parametrize(("foreach", "host_gamma"), KERNELS[:2] + KERNELS[3:])
def test_kernels_agree_when_gradients_appear_at_different_steps(
        foreach: bool, host_gamma: bool | None) -> None:
    reference = _partial_gradients(False, None)
    for got, want in zip(_partial_gradients(foreach, host_gamma), reference, strict=True):
        torch.testing.assert_close(got, want)


# ---- a loss or gradient the step rule has no answer for is refused, nothing changed ----

def _model_and_optimizer(foreach: bool, host_gamma: bool | None
                         ) -> tuple[torch.nn.Linear, DFW, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2, dtype=torch.float64)
    x, y = torch.randn(8, 3, dtype=torch.float64), torch.randint(0, 2, (8,))
    opt = DFW(model.parameters(), eta=0.5, momentum=0.9, weight_decay=1e-3, foreach=foreach,
              host_gamma=host_gamma)
    _train(model, opt, x, y, 2)  # momentum buffers exist
    return model, opt, x, y


def _snapshot(model: torch.nn.Module, opt: DFW) -> list[torch.Tensor]:
    return ([p.detach().clone() for p in model.parameters()]
            + [opt.state[p]["momentum_buffer"].clone() for p in model.parameters()])


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(("foreach", "host_gamma"), KERNELS)
def test_bad_loss_refused_before_anything_changes(bad: float, foreach: bool,
                                                  host_gamma: bool | None) -> None:
    model, opt, x, y = _model_and_optimizer(foreach, host_gamma)
    before, gamma_before = _snapshot(model, opt), opt.last_gamma
    loss_fn = MultiClassHingeLoss()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        return loss - loss.detach() + bad  # the value is `bad`, the gradients are finite

    with pytest.raises(ValueError, match=rf"loss is {re.escape(repr(bad))}.*finite loss >= 0"):
        opt.step(closure)
    for got, want in zip(_snapshot(model, opt), before, strict=True):
        assert torch.equal(got, want)
    assert opt.last_gamma is gamma_before


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize(("foreach", "host_gamma"), KERNELS)
def test_non_finite_gradient_refused_before_anything_changes(bad: float, foreach: bool,
                                                             host_gamma: bool | None) -> None:
    model, opt, x, y = _model_and_optimizer(foreach, host_gamma)
    before = _snapshot(model, opt)
    loss_fn = MultiClassHingeLoss()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        assert model.bias.grad is not None
        model.bias.grad[0] = bad
        return loss

    with pytest.raises(ValueError, match=r"gradient of parameter 1 of group 0 .*not finite"):
        opt.step(closure)
    for got, want in zip(_snapshot(model, opt), before, strict=True):
        assert torch.equal(got, want)


def test_loss_a_rounding_error_below_zero_is_accepted() -> None:
    # a sum of non-negative terms can round to a few ulps below 0: gamma clips it to 0
    w, gammas = linear_step([1.0, 2.0], [3.0, -3.0 / 2.0 - 1e-9 / 2.0], eta=0.1)
    assert gammas == [0.0]
    torch.testing.assert_close(w, torch.tensor([1.0, 2.0], dtype=torch.float64))


# ---- a tiny gamma with weight decay (lambda / gamma overflowed float32) ----

@pytest.mark.parametrize(("foreach", "host_gamma"), KERNELS)
def test_tiny_gamma_with_weight_decay(foreach: bool, host_gamma: bool | None) -> None:
    # loss 1e-40 (a float32 subnormal), g = (1, 1, 1): gamma ~ 3.3e-41,
    # w = w0 - (0.1 w0 + gamma g)
    p = torch.tensor([10.0, -10.0, 0.0], requires_grad=True)
    opt = DFW([p], eta=1.0, weight_decay=0.1, momentum=0.0, foreach=foreach,
              host_gamma=host_gamma)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = p.sum() + 1e-40
        loss.backward()
        return loss

    opt.step(closure)
    gamma = float(opt.last_gamma)  # type: ignore[arg-type]
    assert gamma == pytest.approx(1e-40 / 3.0, rel=1e-3)
    torch.testing.assert_close(p.detach(), torch.tensor([9.0, -9.0, 0.0]))
    assert float(p[2]) == pytest.approx(-gamma, rel=1e-3)


@pytest.mark.parametrize(("foreach", "host_gamma"), KERNELS)
def test_gamma_below_weight_decay(foreach: bool, host_gamma: bool | None) -> None:
    # eta = 1, lambda = 0.5: numerator 5 - 0.5 * 5 = 2.5, gamma = 2.5 / (10 + eps) < lambda
    w, gammas = linear_step([1.0, 2.0], [3.0, 1.0], eta=1.0, weight_decay=0.5,
                            foreach=foreach, host_gamma=host_gamma)
    gamma = 2.5 / (10.0 + EPS)
    assert gammas[0] == pytest.approx(gamma, rel=1e-12)
    torch.testing.assert_close(w, torch.tensor([0.5 - 3 * gamma, 1.0 - gamma],
                                               dtype=torch.float64))


# ---- complex parameters step as pairs of real ones ----

@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize(("foreach", "host_gamma"), KERNELS)
def test_complex_parameters_step_as_pairs_of_real_ones(weight_decay: float, foreach: bool,
                                                       host_gamma: bool | None) -> None:
    z0 = torch.tensor([1.0 + 2.0j, -0.5 + 0.3j], dtype=torch.complex128)
    a = torch.tensor([0.3, -0.2], dtype=torch.float64)
    b = torch.tensor([0.1, 0.4], dtype=torch.float64)
    results = []
    for as_complex in (True, False):
        p = (z0 if as_complex else torch.view_as_real(z0)).clone().requires_grad_(True)
        opt = DFW([p], eta=3.0, momentum=0.9, weight_decay=weight_decay, foreach=foreach,
                  host_gamma=host_gamma)
        gammas = []
        for _ in range(3):
            def closure(p: torch.Tensor = p, opt: DFW = opt,
                        as_complex: bool = as_complex) -> torch.Tensor:
                opt.zero_grad()
                x, y = (p.real, p.imag) if as_complex else (p[:, 0], p[:, 1])
                loss = ((a * x + b * y).sum() - 3.0) ** 2
                loss.backward()
                return loss
            opt.step(closure)
            gammas.append(float(opt.last_gamma))  # type: ignore[arg-type]
        w = p.detach()
        results.append((torch.view_as_real(w) if as_complex else w, gammas))
    assert any(0.0 < g < 1.0 for g in results[1][1]), results[1][1]
    assert results[0][1] == pytest.approx(results[1][1], rel=1e-12)
    torch.testing.assert_close(results[0][0], results[1][0])


# ---- errors that say what DFW expects ----

def test_closure_returning_none_is_explained() -> None:
    w = torch.zeros(2, requires_grad=True)
    opt = DFW([w], eta=0.1)

    def closure() -> None:
        opt.zero_grad()
        w.sum().backward()

    with pytest.raises(TypeError, match=r"closure returned NoneType.*needs the loss"):
        opt.step(closure)  # type: ignore[arg-type]


def test_per_sample_loss_is_explained() -> None:
    w = torch.ones(3, requires_grad=True)
    opt = DFW([w], eta=0.1)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        losses = w * torch.arange(1.0, 5.0)[:, None]  # one row per sample
        losses.sum(1).mean().backward()
        return losses.sum(1)

    with pytest.raises(ValueError, match=r"shape \(4,\).*one number.*mean"):
        opt.step(closure)
    assert torch.equal(w.detach(), torch.ones(3))


def test_learning_rate_scheduler_is_refused_with_a_reason(tmp_path: Path) -> None:
    w = torch.zeros(2, requires_grad=True)
    opt = DFW([w], eta=0.1)
    expected = r"DFW has no 'lr'.*maximal step is param_group\['eta'\].*no schedule"
    with pytest.raises(KeyError, match=expected):
        torch.optim.lr_scheduler.StepLR(opt, step_size=1)
    # the training loop's `"lr" in group` / `.get` and the hyper-parameters are untouched
    assert "lr" not in opt.param_groups[0] and opt.param_groups[0].get("lr") is None
    # still so after a checkpoint round trip and a copy
    checkpoint.save(tmp_path / "opt.pt", {"optimizer": opt.state_dict()})
    loaded = DFW([w], eta=1.0)
    loaded.load_state_dict(checkpoint.load(tmp_path / "opt.pt")["optimizer"])
    assert loaded.param_groups[0]["eta"] == 0.1
    for other in (loaded, copy.deepcopy(opt)):
        with pytest.raises(KeyError, match=expected):
            torch.optim.lr_scheduler.ReduceLROnPlateau(other)
    with pytest.raises(ValueError, match=r"sets 'lr' \(0\.5\).*'eta'"):
        DFW([{"params": [w], "lr": 0.5}], eta=0.1)


# ---- hyper-parameters changed after construction ----

@pytest.mark.parametrize(("key", "value"), [("eta", -0.5), ("eta", math.nan), ("eta", 0.0),
                                            ("momentum", 1.5), ("weight_decay", -1.0)])
def test_a_bad_value_set_in_param_groups_is_refused_at_the_step(key: str, value: float) -> None:
    """The docstring says to change eta through param_group['eta'], but only the constructor
    checked it: eta -0.5 made every step a silent no-op, momentum 1.5 or weight_decay -1
    drove the loss up (1.37 -> 10.3), eta nan was blamed on ||g||^2."""
    w1, w2 = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    opt = DFW([{"params": [w1]}, {"params": [w2]}], eta=0.1, momentum=0.5)
    opt.param_groups[1][key] = value

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (w1 + w2).sum()
        loss.backward()
        return loss

    with pytest.raises(ValueError, match=rf"param group 1: {key}.*{re.escape(repr(value))}"):
        opt.step(closure)
    assert torch.equal(w1.detach(), torch.ones(2)) and torch.equal(w2.detach(), torch.ones(2))


def _trained_state() -> tuple[torch.nn.Module, dict[str, object]]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = DFW(model.parameters(), eta=0.1, momentum=0.9)
    _train(model, opt, torch.randn(8, 3), torch.randint(0, 2, (8,)), 1)
    return model, copy.deepcopy(opt.state_dict())


def test_load_state_dict_refuses_bad_values_another_optimizer_and_wrong_shapes() -> None:
    """A checkpoint whose saved eta was -1 trained uphill (0.26 -> 15.2) unrefused; an SGD
    state dict gave `KeyError: 'eta'` at the next step; a momentum buffer of the wrong
    shape failed inside torch._foreach_add_. Each is refused at load, and nothing changes."""
    model, good = _trained_state()
    opt = DFW(model.parameters(), eta=0.3, momentum=0.0)

    def refused(state: dict[str, object], match: str) -> None:
        with pytest.raises(ValueError, match=match):
            opt.load_state_dict(state)
        assert opt.param_groups[0]["eta"] == 0.3 and not opt.state

    bad_eta = copy.deepcopy(good)
    bad_eta["param_groups"][0]["eta"] = -1.0  # type: ignore[index]
    refused(bad_eta, r"param group 0 of the loaded state: eta .* got -1\.0")
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    refused(sgd.state_dict(), r"param group 0 of the loaded state has no 'eta'.*it has 'lr'.*"
                              r"another optimizer")
    wrong_shape = copy.deepcopy(good)
    wrong_shape["state"][0]["momentum_buffer"] = torch.zeros(5)  # type: ignore[index]
    refused(wrong_shape, r"momentum buffer of parameter 0 is \(5,\).*shape is \(2, 3\)")
    opt.load_state_dict(good)
    assert opt.param_groups[0]["eta"] == 0.1 and len(opt.state) == 2
