"""The float32 rounding model: onnxruntime's outputs lie inside the bounds, and a property that
holds only in exact arithmetic is never proven."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from meetup_ros.verification import VerificationInputError
from meetup_ros.verification.bab import verify
from meetup_ros.verification.bounds.crown import crown_bounds
from meetup_ros.verification.falsify import onnxruntime_forward, spec_layers, spec_rounding
from meetup_ros.verification.mip import solve_min_max_margin
from meetup_ros.verification.network import Network, load_network
from meetup_ros.verification.onnx_loader import save_onnx
from meetup_ros.verification.spec import Disjunct, Property
from meetup_ros.verification.vnnlib import load_vnnlib

REPO = Path(__file__).resolve().parent.parent


def _output_bounds(net: Network, lower: np.ndarray, upper: np.ndarray, rounding: bool
                   ) -> tuple[np.ndarray, np.ndarray]:
    """CROWN bounds ``(P, m)`` of every output over the boxes ``(P, n)``."""
    m = net.n_outputs
    coeffs = np.vstack([np.eye(m), -np.eye(m)])
    layers = spec_layers(net, coeffs, np.zeros(2 * m))
    res = crown_bounds(layers, torch.as_tensor(lower), torch.as_tensor(upper),
                       rounding=spec_rounding(net, coeffs) if rounding else None)
    bound = res.lower.numpy()
    return bound[:, :m], -bound[:, m:]


def _ops_model(path: Path) -> Path:
    """Every arithmetic operator the loader follows, on values of ~1e3 whose sums cancel."""
    rng = np.random.default_rng(5)
    f32 = np.float32
    inits = [
        numpy_helper.from_array(rng.uniform(-300, 300, (1, 4)).astype(f32), "mean"),
        numpy_helper.from_array(rng.uniform(0.01, 0.1, (1, 4)).astype(f32), "scale"),
        numpy_helper.from_array(rng.choice([-50.0, 50.0], (4, 16)).astype(f32)
                                + rng.normal(size=(4, 16)).astype(f32), "W1"),
        numpy_helper.from_array(rng.normal(size=16).astype(f32) * 1e3, "b1"),
        numpy_helper.from_array(rng.normal(size=(8, 16)).astype(f32), "G"),
        numpy_helper.from_array(rng.normal(size=8).astype(f32), "c"),
        numpy_helper.from_array(rng.normal(size=(8, 3)).astype(f32), "W2"),
        numpy_helper.from_array(np.full(3, 3.0, f32), "three"),
    ]
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["s"]),
        helper.make_node("Div", ["s", "scale"], ["n"]),
        helper.make_node("MatMul", ["n", "W1"], ["m"]),
        helper.make_node("Add", ["m", "b1"], ["a"]),
        helper.make_node("Relu", ["a"], ["h"]),
        helper.make_node("Gemm", ["h", "G", "c"], ["g"], transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Relu", ["g"], ["h2"]),
        helper.make_node("MatMul", ["h2", "W2"], ["o"]),
        helper.make_node("Mul", ["o", "three"], ["o3"]),
        helper.make_node("Neg", ["o3"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "ops", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def _networks(tmp_path: Path) -> dict[str, tuple[Path, float, float]]:
    """name -> (ONNX file, input low, input high)."""
    nets = {"governor": (REPO / "models" / "governor.onnx", -2.0, 2.0),
            "ops": (_ops_model(tmp_path / "ops.onnx"), -400.0, 400.0)}
    acas = REPO.parent / "shared" / "data" / "acasxu" / "ACASXU_run2a_1_1_batch_2000.onnx"
    if acas.is_file():
        nets["acasxu_1_1"] = (acas, -0.5, 0.5)
    return nets


@pytest.mark.parametrize("name", ["governor", "ops", "acasxu_1_1"])
def test_onnxruntime_lies_inside_the_rounded_bounds(tmp_path: Path, name: str) -> None:
    nets = _networks(tmp_path)
    if name not in nets:
        pytest.skip("ACAS Xu networks not found in ../shared/data/acasxu")
    path, lo, hi = nets[name]
    net = load_network(path)
    rng = np.random.default_rng(11)
    x = rng.uniform(lo, hi, (300, net.n_inputs)).astype(np.float32).astype(np.float64)
    y_ort = np.stack([onnxruntime_forward(str(path), xi) for xi in x])
    # at single points (zero-width boxes) and over small boxes around them
    for half in (0.0, 1e-3 * (hi - lo)):
        lower, upper = _output_bounds(net, x - half, x + half, rounding=True)
        assert np.all(lower <= y_ort) and np.all(y_ort <= upper), name
    # Without the rounding a point's bounds are its float64 value, which onnxruntime's
    # float32 result misses at most points: the model is what makes the bounds hold.
    lower, upper = _output_bounds(net, x, x, rounding=False)
    assert np.mean((y_ort < lower) | (y_ort > upper)) > 0.5
    # ... and it is not vacuous: at a point it is small against the outputs' spread.
    lower, upper = _output_bounds(net, x, x, rounding=True)
    spread = y_ort.max(0) - y_ort.min(0)
    assert np.median((upper - lower) / spread) < 1e-4, name


def _saved(tmp_path: Path, weights: list[list[list[float]]], biases: list[list[float]],
           name: str) -> Network:
    net = Network([np.array(w) for w in weights], [np.array(b) for b in biases])
    return load_network(save_onnx(net, tmp_path / f"{name}.onnx"))


def test_a_property_only_exact_arithmetic_satisfies_is_not_proven(tmp_path: Path) -> None:
    """y = relu(x + 1e8) - relu(1e8) is x exactly, but 0 in float32 for x < 4 (x + 1e8 rounds
    to 1e8): "y > 0.1 for x in [0.2, 0.25]" holds exactly and fails in onnxruntime."""
    net = _saved(tmp_path, [[[1.0], [0.0]], [[1.0, -1.0]]], [[1e8, 1e8], [0.0]], "cancel")
    unsafe = Disjunct(np.array([0.2]), np.array([0.25]), np.array([[1.0]]), np.array([0.1]))
    prop = Property((unsafe,), 1, 1)
    exact = solve_min_max_margin(net, unsafe.coeffs, unsafe.rhs, unsafe.lower, unsafe.upper,
                                 exact=True)
    assert exact.status == "unsat" and exact.dual_bound > 0.09  # the exact network is safe
    assert onnxruntime_forward(net.source, np.array([0.22]))[0] == 0.0  # the deployed one not
    result = verify(net, prop, timeout_s=5.0)
    assert result.status != "unsat", result.stats
    rounded = solve_min_max_margin(net, unsafe.coeffs, unsafe.rhs, unsafe.lower, unsafe.upper)
    assert rounded.status != "unsat"


def test_float32_overflow_inside_a_block_is_never_proven(tmp_path: Path) -> None:
    """(x * 1e30) / 1e30 is x exactly, but inf in float32 once |x| > 3.4e8."""
    inits = [numpy_helper.from_array(np.array([1e30], np.float32), "big")]
    nodes = [helper.make_node("Mul", ["x", "big"], ["m"]),
             helper.make_node("Div", ["m", "big"], ["y"])]
    graph = helper.make_graph(
        nodes, "overflow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "overflow.onnx"
    path.write_bytes(model.SerializeToString())
    net = load_network(path)
    assert np.isinf(onnxruntime_forward(str(path), np.array([1e9]))[0])
    # unsafe: y >= 2e9, impossible for x <= 1e9 in exact arithmetic
    unsafe = Disjunct(np.array([-1e9]), np.array([1e9]), np.array([[-1.0]]), np.array([-2e9]))
    result = verify(net, Property((unsafe,), 1, 1), timeout_s=5.0)
    assert result.status == "timeout" and "overflow" in result.stats["reason"], result.stats
    # the same graph over a box where float32 holds every value is proven
    small = Disjunct(np.array([-1e7]), np.array([1e7]), np.array([[-1.0]]), np.array([-2e7]))
    assert verify(net, Property((small,), 1, 1), timeout_s=5.0).status == "unsat"


def _graph_file(tmp_path: Path, name: str, nodes: list, inits: list, n_in: int, n_out: int,
                in_type: int = TensorProto.FLOAT) -> Path:
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", in_type, [1, n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n_out])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def _const(name: str, value: list) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(value, dtype=np.float32), name)


def test_a_partial_sum_that_overflows_is_never_proven(tmp_path: Path) -> None:
    """A tester's: x @ [1 1 1 1] @ [3e38 3e38 -3e38 -3e38]^T is 0 exactly, inf in float32
    (3e38 + 3e38 on the way); the result's own magnitude showed no overflow."""
    path = _graph_file(tmp_path, "partial", [
        helper.make_node("MatMul", ["x", "A"], ["t"]),
        helper.make_node("MatMul", ["t", "B"], ["y"])],
        [_const("A", [[1.0, 1.0, 1.0, 1.0]]), _const("B", [[3e38], [3e38], [-3e38], [-3e38]])],
        1, 1)
    net = load_network(path)
    assert np.isinf(onnxruntime_forward(str(path), np.array([0.95]))[0])
    unsafe = Disjunct(np.array([0.9]), np.array([1.0]), np.array([[-1.0]]), np.array([-1e34]))
    result = verify(net, Property((unsafe,), 1, 1), timeout_s=5.0)
    assert result.status == "timeout" and "overflow" in result.stats["reason"], result.stats


def test_a_matmul_of_two_constants_is_refused(tmp_path: Path) -> None:
    """[1e8, 1 (x15), -1e8] . ones is 15 exactly (and in numpy), 0 in onnxruntime's
    in-order sum: the folded weight depends on the kernel."""
    from meetup_ros.verification import VerificationInputError

    path = _graph_file(tmp_path, "constmm", [
        helper.make_node("MatMul", ["A", "B"], ["C"]),
        helper.make_node("MatMul", ["x", "C"], ["y"])],
        [_const("A", [[1e8] + [1.0] * 15 + [-1e8]]), _const("B", [[1.0]] * 17)], 1, 1)
    with pytest.raises(VerificationInputError, match="MatMul of two constants"):
        load_network(path)


def test_sessions_run_the_graph_that_was_proven(tmp_path: Path, caplog) -> None:
    """onnxruntime's extended level fuses (x * 1e-30) @ 1e30 into one FusedMatMul whose
    x @ 1e30 overflows; the sessions this project runs (confirm, the controller) stay at the
    basic level, where the graph is evaluated as written, and the loader says so."""
    import onnxruntime as ort

    from meetup_ros.control.network import GovernorRuntime

    path = _graph_file(tmp_path, "fusion", [
        helper.make_node("Mul", ["x", "s"], ["t"]),
        helper.make_node("MatMul", ["t", "W"], ["y"])],
        [_const("s", [1e-30]), _const("W", [[1e30]])], 1, 1)
    with caplog.at_level("WARNING"):
        net = load_network(path)
    assert "FusedMatMul" in caplog.text
    x = np.array([5e9], dtype=np.float32)
    default = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert np.isinf(default.run(None, {"x": x.reshape(1, 1)})[0]).all()  # what is not proven
    assert onnxruntime_forward(str(path), x)[0] == pytest.approx(5e9, rel=1e-6)
    unsafe = Disjunct(np.array([1e9]), np.array([1e10]), np.array([[-1.0]]), np.array([-1e11]))
    assert verify(net, Property((unsafe,), 1, 1), timeout_s=5.0).status == "unsat"
    governor = GovernorRuntime(REPO / "models" / "governor.onnx")
    level = governor._session.get_session_options().graph_optimization_level
    assert level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC


def test_models_onnxruntime_cannot_run_and_unsupported_constant_casts(tmp_path: Path) -> None:
    from meetup_ros.verification import VerificationInputError

    double = numpy_helper.from_array(np.array([1.0]), "c")  # float64 + float32 input
    path = _graph_file(tmp_path, "double", [helper.make_node("Add", ["x", "c"], ["y"])],
                       [double], 1, 1)
    with pytest.raises(VerificationInputError, match="onnxruntime cannot load it"):
        load_network(path)
    # a constant cast to int64 (a Reshape's shape) is applied, not refused as input-dependent
    path = _graph_file(tmp_path, "castint", [
        helper.make_node("Cast", ["s"], ["si"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["x", "si"], ["y"])], [_const("s", [1.0, 1.0])], 1, 1)
    assert load_network(path).n_outputs == 1
    path = _graph_file(tmp_path, "divzero", [helper.make_node("Div", ["x", "z"], ["y"])],
                       [_const("z", [0.0])], 1, 1)
    with pytest.raises(VerificationInputError, match="divides by a constant with zero"):
        load_network(path)


def test_operators_outside_the_standard_domain_are_refused(tmp_path: Path) -> None:
    """A tester's 'Relu' in domain 'evil', a model-local function whose body is Neg:
    onnxruntime runs the Neg, and reading the node by its name proved y = relu(x) >= 0."""
    from meetup_ros.verification import VerificationInputError

    body = helper.make_function("evil", "Relu", ["a"], ["b"],
                                [helper.make_node("Neg", ["a"], ["b"])],
                                [helper.make_opsetid("", 13)])
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], domain="evil")], "local",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])])
    model = helper.make_model(graph, functions=[body], opset_imports=[
        helper.make_opsetid("", 13), helper.make_opsetid("evil", 1)])
    model.ir_version = 8
    path = tmp_path / "local.onnx"
    path.write_bytes(model.SerializeToString())
    assert onnxruntime_forward(str(path), np.array([1.0]))[0] == -1.0  # what runs
    with pytest.raises(VerificationInputError, match="model-local functions"):
        load_network(path)
    del model.functions[:]
    path.write_bytes(model.SerializeToString())
    with pytest.raises(VerificationInputError, match="domain 'evil'"):
        load_network(path)


@pytest.mark.parametrize(("op", "a", "b", "expected"), [
    ("Div", 7, 2, 3.0),  # truncating integer division, not 3.5
    ("Div", -7, 2, -3.0),  # toward zero, not numpy's floor (-4)
    ("Sub", 2**62 + 1, 2**62, 1.0),  # exact in int64, 0 through float64
    ("Add", 2**62 + 1, -(2**62), 1.0),
    ("Mul", 3, -5, -15.0),
])
def test_integer_constants_fold_like_onnxruntime(tmp_path: Path, op: str, a: int, b: int,
                                                 expected: float) -> None:
    """A tester's two wrong "unsat"s: int64 7 / 2 read as 3.5 and (2^62 + 1) - 2^62 as 0."""
    ints = [numpy_helper.from_array(np.array([a], dtype=np.int64), "a"),
            numpy_helper.from_array(np.array([b], dtype=np.int64), "b")]
    path = _graph_file(tmp_path, f"int{op}", [
        helper.make_node(op, ["a", "b"], ["k"]),
        helper.make_node("Cast", ["k"], ["kf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x", "kf"], ["y"])], ints, 1, 1)
    assert onnxruntime_forward(str(path), np.array([1.0]))[0] == expected
    net = load_network(path)
    assert float(net.forward(np.array([1.0]))[0]) == expected
    # the property "y is within 0.4 of the misread value" must not be proven
    wrong = {"Div": 3.5 if a > 0 else -3.5, "Sub": 0.0, "Add": 0.0, "Mul": -15.0}[op]
    if wrong != expected:
        unsafe = (Disjunct(np.array([1.0]), np.array([1.0]), np.array([[1.0]]),
                           np.array([wrong - 0.4])),
                  Disjunct(np.array([1.0]), np.array([1.0]), np.array([[-1.0]]),
                           np.array([-wrong - 0.4])))
        assert verify(net, Property(unsafe, 1, 1), timeout_s=5.0).status == "sat"


def test_relu_of_a_constant_folds_in_its_type(tmp_path: Path) -> None:
    path = _graph_file(tmp_path, "reluconst", [
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Add", ["x", "r"], ["y"])], [_const("c", [-2.0])], 1, 1)
    net = load_network(path)
    assert float(net.forward(np.array([1.5]))[0]) == 1.5
    assert len(net.weights) == 1  # a constant's ReLU closes no layer


def test_scale_fusion_warning_looks_through_identity_and_cast(tmp_path: Path, caplog) -> None:
    """A tester's (x * 1e-38) -> Identity / Cast -> MatMul 1e38: fused at the extended
    level all the same, and no warning was given."""
    for between in ("Identity", "Cast"):
        attrs = {"to": TensorProto.FLOAT} if between == "Cast" else {}
        path = _graph_file(tmp_path, f"fuse{between}", [
            helper.make_node("Mul", ["x", "s"], ["t"]),
            helper.make_node(between, ["t"], ["u"], **attrs),
            helper.make_node("MatMul", ["u", "W"], ["y"])],
            [_const("s", [1e-38]), _const("W", [[1e38]])], 1, 1)
        caplog.clear()
        with caplog.at_level("WARNING"):
            load_network(path)
        assert "FusedMatMul" in caplog.text, between


def test_a_mul_by_a_folded_reciprocal_covers_onnxruntimes_division(tmp_path: Path) -> None:
    """A third tester's: k = 1 / 13 folded, y = x * k. At the basic level onnxruntime's
    DivMulFusion computes x / 13 instead, which can be 1.55 u from x * fl(1 / 13): a point
    box with onnxruntime's own output as the bound was "unsat"."""
    path = _graph_file(tmp_path, "divmul", [
        helper.make_node("Div", ["one", "c"], ["k"]),
        helper.make_node("Mul", ["x", "k"], ["y"])],
        [_const("one", [1.0]), _const("c", [13.0])], 1, 1)
    net = load_network(path)
    x0 = float(np.float32(1.6250051))
    y_ort = float(onnxruntime_forward(str(path), np.array([x0]))[0])
    assert y_ort == float(np.float32(x0) / np.float32(13.0))  # the fused division
    point = Disjunct(np.array([x0]), np.array([x0]), np.array([[1.0]]), np.array([y_ort]))
    assert verify(net, Property((point,), 1, 1), timeout_s=5.0).status != "unsat"
    # each point's own box: onnxruntime's value inside its bounds
    xs = np.random.default_rng(0).uniform(-100, 100, 500).astype(np.float32).astype(float)
    lo, hi = _output_bounds(net, xs[:, None], xs[:, None], rounding=True)
    ys = np.array([onnxruntime_forward(str(path), np.array([x]))[0] for x in xs])
    assert np.all(lo[:, 0] <= ys) and np.all(ys <= hi[:, 0])


def test_half_precision_constants_as_onnxruntime_makes_them(tmp_path: Path) -> None:
    """A double cast to half goes through float in onnxruntime (two roundings: 1 + 2^-11 +
    2^-40 is 1.0 there); arithmetic between half constants, which onnxruntime's CPU runs in
    float, is refused."""
    from meetup_ros.verification import VerificationInputError

    k = numpy_helper.from_array(np.array([1.0 + 2.0**-11 + 2.0**-40]), "k")  # double
    path = _graph_file(tmp_path, "d2h", [
        helper.make_node("Cast", ["k"], ["h"], to=TensorProto.FLOAT16),
        helper.make_node("Cast", ["h"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["x", "f"], ["y"])], [k], 1, 1)
    y_ort = float(onnxruntime_forward(str(path), np.array([0.0]))[0])
    assert float(load_network(path).forward(np.array([0.0]))[0]) == y_ort == 1.0
    halves = [numpy_helper.from_array(np.array([1.0], np.float16), "a"),
              numpy_helper.from_array(np.array([2.0**-11], np.float16), "b")]
    path = _graph_file(tmp_path, "h16add", [
        helper.make_node("Add", ["a", "b"], ["h"]),
        helper.make_node("Cast", ["h"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["x", "f"], ["y"])], halves, 1, 1)
    with pytest.raises(VerificationInputError, match="Add of constants of type float16"):
        load_network(path)


@pytest.mark.parametrize("fused", [True, False])
def test_a_bias_is_rounded_once_per_block_of_a_long_product(tmp_path: Path,
                                                            fused: bool) -> None:
    """A fourth tester's: onnxruntime's Gemm (and MatMul + Add, fused into it) puts C in the
    output first and adds the product 256 terms at a time: with K = 2048, C = 2^24 and a 1
    per block, float32 gives 2^24, not 2^24 + 8, and Y_0 <= 2^24 + 4 was "unsat"."""
    k = 2048
    W = np.zeros((k, 1), np.float32)
    W[::256, 0] = 1.0
    nodes = ([helper.make_node("Gemm", ["x", "W", "C"], ["y"])] if fused else
             [helper.make_node("MatMul", ["x", "W"], ["m"]),
              helper.make_node("Add", ["m", "C"], ["y"])])
    path = _graph_file(tmp_path, f"blocks{fused}", nodes,
                       [numpy_helper.from_array(W, "W"), _const("C", [2.0**24])], k, 1)
    x = np.zeros(k)
    x[::256] = 1.0
    assert onnxruntime_forward(str(path), x)[0] == 2.0**24  # the eight 1s rounded away
    net = load_network(path)
    box = Disjunct(x.copy(), x.copy(), np.array([[1.0]]), np.array([2.0**24 + 4]))
    assert verify(net, Property((box,), k, 1), timeout_s=5.0).status != "unsat"


def test_constant_products_with_a_folded_quotient_are_refused(tmp_path: Path) -> None:
    """DivMulFusion runs before constant folding: 10 * (1 / 3) is 3 in onnxruntime's int64
    (10 / 3), 0 folded in order; for floats c / d and c * fl(1 / d) differ by an ulp."""
    from meetup_ros.verification import VerificationInputError

    ints = [numpy_helper.from_array(np.array([v], np.int64), n)
            for n, v in (("one", 1), ("d", 3), ("c", 10))]
    path = _graph_file(tmp_path, "divmulint", [
        helper.make_node("Div", ["one", "d"], ["q"]),
        helper.make_node("Mul", ["c", "q"], ["k"]),
        helper.make_node("Cast", ["k"], ["kf"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["x", "kf"], ["y"])], ints, 1, 1)
    assert onnxruntime_forward(str(path), np.array([0.0]))[0] == 3.0
    with pytest.raises(VerificationInputError, match="folded quotient"):
        load_network(path)


def test_float64_rounding_of_huge_margins_is_not_a_proof(tmp_path: Path) -> None:
    """A fourth tester's: y = relu(x) at (2, 1, 1) meets (2^52 + 1) y0 + y1 - y2 <=
    2^53 + 2 with equality, which float64 rounding turned into a margin of 2."""
    path = _graph_file(tmp_path, "relu3", [helper.make_node("Relu", ["x"], ["y"])], [], 3, 3)
    net = load_network(path)
    x = np.array([2.0, 1.0, 1.0])
    row = Disjunct(x.copy(), x.copy(), np.array([[2.0**52 + 1, 1.0, -1.0]]),
                   np.array([2.0**53 + 2]))
    assert verify(net, Property((row,), 3, 3), timeout_s=5.0).status != "unsat"


def test_a_counterexample_must_be_unsafe_in_exact_arithmetic(tmp_path: Path) -> None:
    """A fourth tester's wrong "sat": y = (2^53, 1) meets Y_0 + Y_1 <= 2^53 only because
    float64 rounds the sum."""
    path = _graph_file(tmp_path, "relu2", [helper.make_node("Relu", ["x"], ["y"])], [], 2, 2)
    net = load_network(path)
    x = np.array([2.0**53, 1.0])
    row = Disjunct(x.copy(), x.copy(), np.array([[1.0, 1.0]]), np.array([2.0**53]))
    assert verify(net, Property((row,), 2, 2), timeout_s=3.0).status != "sat"
    row = Disjunct(x.copy(), x.copy(), np.array([[1.0, 1.0]]), np.array([2.0**53 + 2]))
    assert verify(net, Property((row,), 2, 2), timeout_s=3.0).status == "sat"


def _relu_and_vnnlib(tmp_path: Path, name: str, asserts: str) -> tuple[Network, Property]:
    """y = relu(x) on one input (float32, as onnxruntime runs it) and a property file."""
    net = load_network(_graph_file(tmp_path, "relu1", [helper.make_node("Relu", ["x"], ["y"])],
                                   [], 1, 1))
    path = tmp_path / f"{name}.vnnlib"
    path.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n" + asserts)
    return net, load_vnnlib(path)


def test_a_counterexample_must_violate_the_output_bound_as_written(tmp_path: Path) -> None:
    """A tester's Y_0 <= 0.99999999999999999999 was "sat" at y = 1.0: the bound is read
    rounded up to 1.0, but y = 1.0 lies above the bound as written, so the property holds.
    The read bound is all the proof sees, so "unsat" cannot be proven either: undecided."""
    net, prop = _relu_and_vnnlib(tmp_path, "below_one", "(assert (>= X_0 1))\n"
                                 "(assert (<= X_0 1))\n(assert (<= Y_0 0.99999999999999999999))\n")
    assert prop.disjuncts[0].rhs[0] == 1.0  # read outward: the proof side is unchanged
    result = verify(net, prop, timeout_s=3.0)
    assert result.status in ("unsat", "timeout"), (result.status, result.x, result.y)


def test_a_counterexample_must_violate_a_strict_bound_strictly(tmp_path: Path) -> None:
    """Y_0 < 1.0 read as Y_0 <= 1.0 was "sat" at y = 1.0 exactly."""
    net, prop = _relu_and_vnnlib(tmp_path, "strict", "(assert (>= X_0 1))\n"
                                 "(assert (<= X_0 1))\n(assert (< Y_0 1.0))\n")
    result = verify(net, prop, timeout_s=3.0)
    assert result.status in ("unsat", "timeout"), (result.status, result.x, result.y)


def test_a_counterexample_input_must_lie_in_the_box_as_written(tmp_path: Path) -> None:
    """X_0 >= 0.50000000000000000001 reads as X_0 >= 0.5 (rounded down), and y = x <= 0.5
    only at x = 0.5: outside the box as written, so never a counterexample."""
    net, prop = _relu_and_vnnlib(tmp_path, "input", "(assert (>= X_0 0.50000000000000000001))\n"
                                 "(assert (<= X_0 0.75))\n(assert (<= Y_0 0.5))\n")
    assert prop.disjuncts[0].lower[0] == 0.5  # read outward: it admits x = 0.5
    result = verify(net, prop, timeout_s=3.0)
    assert result.status in ("unsat", "timeout"), (result.status, result.x, result.y)


def test_a_counterexample_is_still_found_inside_the_box_as_written(tmp_path: Path) -> None:
    """An ordinary violation is still "sat"; and where the falsifier's best point is the read
    box's edge (x = 0.5, outside the box as written) the next float32 input above it
    (0.5 + 2^-24, y = x <= 0.5000001) is the counterexample reported."""
    from fractions import Fraction

    net, prop = _relu_and_vnnlib(tmp_path, "plain", "(assert (>= X_0 0))\n"
                                 "(assert (<= X_0 1))\n(assert (> Y_0 0.5))\n")
    result = verify(net, prop, timeout_s=5.0)
    assert result.status == "sat" and result.x is not None
    assert onnxruntime_forward(net.source, result.x)[0] > 0.5 and 0 <= result.x[0] <= 1
    net, prop = _relu_and_vnnlib(tmp_path, "edge", "(assert (>= X_0 0.50000000000000000001))\n"
                                 "(assert (<= X_0 0.75))\n(assert (<= Y_0 0.5000001))\n")
    result = verify(net, prop, timeout_s=5.0)
    assert result.status == "sat" and result.x is not None, result.stats
    assert Fraction(float(result.x[0])) > Fraction("0.50000000000000000001")
    assert Fraction(float(onnxruntime_forward(net.source, result.x)[0])) <= Fraction("0.5000001")


def _identity_net(tmp_path: Path) -> Network:
    """y = x (MatMul by 1, Add 0): a violation's y is known exactly."""
    return load_network(_graph_file(tmp_path, "ident1", [
        helper.make_node("MatMul", ["x", "W"], ["t"]), helper.make_node("Add", ["t", "b"], ["y"])],
        [_const("W", [[1.0]]), _const("b", [0.0])], 1, 1))


def _yaml_property(tmp_path: Path, name: str, lower: float, upper: float,
                   constraint: str) -> Property:
    from meetup_ros.verification.spec import load_property_yaml

    path = tmp_path / f"{name}.yaml"
    path.write_text(f"inputs: [x]\noutputs: [a]\ndomain: {{lower: [{lower!r}], upper: "
                    f"[{upper!r}]}}\nunsafe: [[\"{constraint}\"]]\n")
    return load_property_yaml(path)


def test_yaml_constants_are_exact_not_float64_sums(tmp_path: Path) -> None:
    """A tester's wrong "unsat"s: YAML constants were summed in float64, so
    a + 1e308 + 1e308 >= 1e308 + 1e308 (a >= 0) had a NaN bound, which every proof passed,
    also at run time ("verified"); a + 1000000000.3 >= 1000000000.6 (a >= 0.3) read as
    a >= 0.30000007 and lost the unsafe point x = 0.30000004. Both are violated (y = x)."""
    from meetup_ros.verification.runtime import RuntimeMonitor

    net = _identity_net(tmp_path)
    prop = _yaml_property(tmp_path, "overflow", -1.0, 1.0, "a + 1e308 + 1e308 >= 1e308 + 1e308")
    assert np.isfinite(prop.disjuncts[0].rhs).all()
    result = verify(net, prop, timeout_s=5.0)
    assert result.status == "sat" and result.y is not None and result.y[0] >= 0
    monitor = RuntimeMonitor(net, prop)
    cert = monitor.certify(np.array([0.2]), np.array([0.3]))
    assert cert.status == "violated", cert
    relu = load_network(_graph_file(tmp_path, "relu1", [helper.make_node("Relu", ["x"], ["y"])],
                                    [], 1, 1))
    top = 0.30000004172325134  # float32; y = relu(x) = x there, >= 0.3 as written
    prop = _yaml_property(tmp_path, "cancel", 0.0, top, "a + 1000000000.3 >= 1000000000.6")
    result = verify(relu, prop, timeout_s=5.0)
    assert result.status == "sat", result.status
    # a constant beyond float64 is refused by name, not read as inf
    with pytest.raises(VerificationInputError, match=r"unsafe\[0\]\[0\].*float64 range"):
        _yaml_property(tmp_path, "inf", 0.0, 1.0, "a + 1e400 >= 1e400")


def test_a_reported_counterexample_is_onnxruntimes_output(tmp_path: Path) -> None:
    """A tester's: y = x + 2^-25 at x = 1 is 1.0 in float32 (onnxruntime), 1.0000000298 in
    float64; the "sat" is right (1.0 < 1.0000000298023223876953125) but the y printed was
    the float64 one, which does not meet the row as written."""
    from fractions import Fraction

    net = load_network(_graph_file(tmp_path, "tiny_add", [
        helper.make_node("MatMul", ["x", "W"], ["t"]), helper.make_node("Add", ["t", "b"], ["y"])],
        [_const("W", [[1.0]]), _const("b", [2.0**-25])], 1, 1))
    path = tmp_path / "tiny.vnnlib"
    path.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 1))\n"
                    "(assert (<= X_0 1))\n(assert (< Y_0 1.0000000298023223876953125))\n")
    result = verify(net, load_vnnlib(path), timeout_s=5.0)
    assert result.status == "sat" and result.y is not None
    assert result.y[0] == onnxruntime_forward(net.source, result.x)[0] == 1.0
    assert Fraction(float(result.y[0])) < Fraction("1.0000000298023223876953125")


def test_yaml_domain_bounds_are_read_as_written(tmp_path: Path) -> None:
    """A sixth tester's wrong "sat"s: PyYAML's float() read upper 0.99999999999999999 as 1.0
    (sat at x = 1.0 for y = x >= 1, outside the box as written) and -1.0e-400 as -0.0."""
    from meetup_ros.verification.runtime import RuntimeMonitor
    from meetup_ros.verification.spec import load_property_yaml

    net = _identity_net(tmp_path)
    for name, upper, unsafe in (("below_one", "0.99999999999999999", "a >= 1"),
                                ("tiny", "-1.0e-400", "a >= 0")):
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"inputs: [x]\noutputs: [a]\ndomain: {{lower: [-2.0], upper: [{upper}]}}"
                        f"\nunsafe: [['{unsafe}']]\n")
        prop = load_property_yaml(path)
        assert prop.disjuncts[0].upper[0] >= float(upper)  # rounded outward for the proof
        result = verify(net, prop, timeout_s=3.0)
        assert result.status in ("unsat", "timeout"), (name, result.status, result.x)
        cert = RuntimeMonitor(net, prop).certify(np.array([-2.0]), np.array([1.0]))
        assert cert.status != "violated", (name, cert)


@pytest.mark.parametrize(("bounds", "message"), [
    ("{lower: [0], upper: [" + "9" * 400 + "]}", r"domain.upper\[0\]: .*beyond the float64"),
    ("{lower: [0], upper: [" + "9" * 5000 + "]}", r"domain.upper\[0\]: .*too many digits"),
    ("{lower: [0], upper: [-.inf]}", r"domain.upper\[0\]: -inf leaves the domain empty"),
    ("{lower: [.inf], upper: [1]}", r"domain.lower\[0\]: inf leaves the domain empty"),
    ("{lower: [1:30.5], upper: [2000]}", r"base-60 number '1:30.5' is not supported"),
])
def test_yaml_domain_numbers_are_named_when_refused(tmp_path: Path, bounds: str,
                                                    message: str) -> None:
    """A 400-digit integer was an "internal error: OverflowError"; an empty domain (upper
    -inf) was accepted, and the monitor "verified" every region outside it."""
    from meetup_ros.verification.spec import load_property_yaml

    path = tmp_path / "p.yaml"
    path.write_text(f"inputs: [x]\noutputs: [a]\ndomain: {bounds}\nunsafe: [['a >= 1']]\n")
    with pytest.raises(VerificationInputError, match=message):
        load_property_yaml(path)


def test_yaml_numbers_mean_what_yaml_says(tmp_path: Path) -> None:
    """A seventh tester's wrong "unsat": kept as decimal text, YAML 1.1's octal 010 was read
    as 10, not 8, so y = x <= 9 over [010, 20] was "unsat" (x = 8 violates). Integers are
    YAML's own (010 = 8, 0x10 = 16, 1_000 = 1000), exact; floats exact decimals, 1_000.5
    included. An output named e1 is refused: "0 >= 2e1" read as 0 >= 20, an empty set."""
    from meetup_ros.verification.spec import load_property_yaml

    net = _identity_net(tmp_path)
    path = tmp_path / "octal.yaml"
    path.write_text("inputs: [x]\noutputs: [a]\ndomain: {lower: [010], upper: [20]}\n"
                    "unsafe: [['a <= 9']]\n")
    prop = load_property_yaml(path)
    assert prop.disjuncts[0].lower[0] == 8.0
    result = verify(net, prop, timeout_s=5.0)
    assert result.status == "sat" and result.x is not None and 8 <= result.x[0] <= 9
    path.write_text("inputs: [x, w, v]\noutputs: [a]\ndomain: {lower: [0x10, 1_000, -1_000.5],"
                    " upper: [0x20, 2_000, 1_000.25]}\nunsafe: [['a <= 9']]\n")
    d = load_property_yaml(path).disjuncts[0]
    assert d.lower.tolist() == [16.0, 1000.0, -1000.5] and d.upper.tolist() == [32.0, 2000.0,
                                                                               1000.25]
    path.write_text("inputs: [x]\noutputs: [e1, z]\ndomain: {lower: [0], upper: [1]}\n"
                    "unsafe: [['0 >= 2e1']]\n")
    with pytest.raises(VerificationInputError, match="name 'e1' reads as an exponent"):
        load_property_yaml(path)
