"""Loading networks and properties: ONNX vs onnxruntime, NNet vs ONNX, VNN-LIB and YAML
parsing, and a table of bad inputs with the errors they raise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from meetup_ros.verification import VerificationInputError
from meetup_ros.verification.network import load_network
from meetup_ros.verification.nnet import load_nnet
from meetup_ros.verification.onnx_loader import save_onnx
from meetup_ros.verification.spec import (
    Disjunct,
    load_property,
    load_property_yaml,
    property_from_dict,
)
from meetup_ros.verification.vnnlib import load_vnnlib, parse_vnnlib

DATA = Path(__file__).parent / "data" / "verification"
NETS = ["1_1", "2_7", "5_9"]


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
    return np.stack([
        session.run(None, {inp.name: xi.astype(np.float32).reshape(shape)})[0].reshape(-1)
        for xi in x])


@pytest.mark.parametrize("net", NETS)
def test_acasxu_onnx_matches_onnxruntime_and_nnet(shared_data: Path, net: str) -> None:
    onnx_path = shared_data / "acasxu" / f"ACASXU_run2a_{net}_batch_2000.onnx"
    network = load_network(onnx_path)
    assert (network.n_inputs, network.n_outputs, network.hidden_sizes) == (5, 5, [50] * 6)
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (40, 5)).astype(np.float32)
    ours = network.forward(x.astype(np.float64))
    np.testing.assert_allclose(ours, _ort(onnx_path, x), rtol=1e-4, atol=2e-6)
    nnet = load_network(shared_data / "acasxu" / "nnet" / f"ACASXU_run2a_{net}_batch_2000.nnet")
    np.testing.assert_allclose(nnet.forward(x), ours, atol=1e-6)


def test_nnet_normalisation_folds_into_the_first_and_last_layer(shared_data: Path) -> None:
    path = shared_data / "acasxu" / "nnet" / "ACASXU_run2a_1_1_batch_2000.nnet"
    raw, folded = load_nnet(path), load_nnet(path, normalize=True)
    means = np.array([19791.091, 0.0, 0.0, 650.0, 600.0])
    ranges = np.array([60261.0, 6.28318530718, 6.28318530718, 1100.0, 1200.0])
    x = np.array([[30000.0, 0.1, -0.2, 500.0, 700.0]])
    expected = raw.forward((x - means) / ranges) * 373.94992 + 7.5188840201005975
    np.testing.assert_allclose(folded.forward(x), expected, rtol=1e-9)


def _model(nodes, inputs, output, inits, opset: int = 13) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, [output], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def test_every_supported_operator_evaluates_like_onnxruntime(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    W1 = rng.normal(size=(6, 4)).astype(np.float32)  # MatMul weight (in, out) = (6, 4)
    G = rng.normal(size=(5, 4)).astype(np.float32)  # Gemm B with transB: (out, in)
    inits = [
        numpy_helper.from_array(np.float32(0.3) * np.ones((1, 1, 2, 3), np.float32), "mean"),
        numpy_helper.from_array(np.array([1, 6], np.int64), "shape"),
        numpy_helper.from_array(W1, "W1"),
        numpy_helper.from_array(rng.normal(size=4).astype(np.float32), "b1"),
        numpy_helper.from_array(G, "G"),
        numpy_helper.from_array(rng.normal(size=5).astype(np.float32), "c"),
        numpy_helper.from_array(np.float32(2.0) * np.ones(5, np.float32), "two"),
    ]
    const = helper.make_tensor("k", TensorProto.FLOAT, [4], rng.normal(size=4).tolist())
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["s"]),
        helper.make_node("Reshape", ["s", "shape"], ["r"]),
        helper.make_node("MatMul", ["r", "W1"], ["m"]),
        helper.make_node("Add", ["m", "b1"], ["a"]),
        helper.make_node("Constant", [], ["kc"], value=const),
        helper.make_node("Sub", ["kc", "a"], ["a2"]),  # constant - input
        helper.make_node("Relu", ["a2"], ["h"]),
        helper.make_node("Identity", ["h"], ["hi"]),
        helper.make_node("Gemm", ["hi", "G", "c"], ["g"], transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Div", ["g", "two"], ["g2"]),
        helper.make_node("Relu", ["g2"], ["h2"]),
        helper.make_node("Neg", ["h2"], ["n"]),
        helper.make_node("Mul", ["n", "two"], ["n2"]),
        helper.make_node("Flatten", ["n2"], ["y"], axis=1),
    ]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 3])],
                   helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5]), inits)
    onnx.checker.check_model(model)
    path = tmp_path / "ops.onnx"
    path.write_bytes(model.SerializeToString())
    net = load_network(path)
    assert (net.n_inputs, net.n_outputs, net.hidden_sizes) == (6, 5, [4, 5])
    x = rng.normal(size=(20, 6)).astype(np.float32)
    np.testing.assert_allclose(net.forward(x), _ort(path, x), rtol=1e-5, atol=1e-5)


def test_a_constant_cast_to_half_precision_is_rounded_like_onnxruntime(tmp_path: Path) -> None:
    """On a constant the cast is applied (1.0007 -> 1.000977, float16's nearest); on the
    input it is refused (test_bad_network_files)."""
    c = numpy_helper.from_array(np.full((1, 2), 1.0007, np.float32), "c")
    model = _model([helper.make_node("Cast", ["c"], ["c16"], to=TensorProto.FLOAT16),
                    helper.make_node("Cast", ["c16"], ["c32"], to=TensorProto.FLOAT),
                    helper.make_node("Sub", ["x", "c32"], ["y"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                   helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2]), [c])
    path = tmp_path / "const16.onnx"
    path.write_bytes(model.SerializeToString())
    x = np.array([[1.0007, 2.0], [0.0, -1.0]], np.float32)
    expected = _ort(path, x)
    np.testing.assert_allclose(load_network(path).forward(x), expected, atol=1e-6)
    assert abs(expected[0, 0]) > 2e-4  # x - c is not 0 at x = c: c was rounded


def test_constants_fold_in_their_own_type_like_onnxruntime(tmp_path: Path) -> None:
    """A tester's graphs: (c1 * c1 - c3) * 1e30 with float32 c1 = 1 + 2^-23, c3 = 1 + 2^-22 is
    0 in float32 (onnxruntime) and 1.4e16 folded in float64; a float64 constant 1 + 1e-8 cast
    to float is 1. Both were proven safe where onnxruntime is not."""
    f32 = np.float32
    inits = [numpy_helper.from_array(np.array([1 + 2.0 ** -23], f32), "c1"),
             numpy_helper.from_array(np.array([1 + 2.0 ** -22], f32), "c3"),
             numpy_helper.from_array(np.array([1e30], f32), "big"),
             numpy_helper.from_array(np.array([1 + 1e-8], np.float64), "cd"),
             numpy_helper.from_array(np.array([1.0], f32), "one"),
             numpy_helper.from_array(np.array([1e9], f32), "giga")]
    model = _model([helper.make_node("Mul", ["c1", "c1"], ["sq"]),
                    helper.make_node("Sub", ["sq", "c3"], ["d"]),
                    helper.make_node("Mul", ["d", "big"], ["e"]),
                    helper.make_node("Cast", ["cd"], ["cf"], to=TensorProto.FLOAT),
                    helper.make_node("Sub", ["cf", "one"], ["g"]),
                    helper.make_node("Mul", ["g", "giga"], ["h"]),
                    helper.make_node("Add", ["x", "e"], ["xe"]),
                    helper.make_node("Add", ["xe", "h"], ["y"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
                   helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1]), inits)
    path = tmp_path / "fold.onnx"
    path.write_bytes(model.SerializeToString())
    x = np.array([[0.25], [-0.5]], np.float32)
    np.testing.assert_allclose(load_network(path).forward(x), _ort(path, x), atol=1e-6)


def test_old_style_initializers_listed_as_inputs(tmp_path: Path) -> None:
    W = np.arange(6, dtype=np.float32).reshape(3, 2) / 7
    inits = [numpy_helper.from_array(W, "W")]
    model = _model(
        [helper.make_node("MatMul", ["x", "W"], ["z"]), helper.make_node("Relu", ["z"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3]),
         helper.make_tensor_value_info("W", TensorProto.FLOAT, [3, 2])],
        helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2]), inits, opset=8)
    path = tmp_path / "old.onnx"
    path.write_bytes(model.SerializeToString())
    net = load_network(path)
    x = np.array([[1.0, -2.0, 3.0]])
    np.testing.assert_allclose(net.forward(x), np.maximum(x @ W, 0), rtol=1e-6)
    # A network ending in ReLU gets an identity output layer.
    assert net.hidden_sizes == [2]


def test_save_onnx_round_trip(tmp_path: Path) -> None:
    from meetup_ros.verification.examples import governor_demo_network

    net = governor_demo_network()
    path = save_onnx(net, tmp_path / "gov.onnx")
    back = load_network(path)
    x = np.random.default_rng(2).uniform(-1, 3, (30, 5))
    np.testing.assert_allclose(back.forward(x), net.forward(x), atol=1e-12)
    np.testing.assert_allclose(_ort(path, x), net.forward(x), atol=1e-5)


def test_vnnlib_prop3_box_and_rows(shared_data: Path) -> None:
    prop = load_vnnlib(shared_data / "acasxu" / "prop_3.vnnlib")
    assert len(prop.disjuncts) == 1 and (prop.n_inputs, prop.n_outputs) == (5, 5)
    d = prop.disjuncts[0]
    np.testing.assert_allclose(d.lower, [-0.303531156, -0.009549297, 0.493380324, 0.3, 0.3])
    np.testing.assert_allclose(d.upper, [-0.298552812, 0.009549297, 0.5, 0.5, 0.5])
    # Y_0 <= Y_j  ->  Y_0 - Y_j <= 0
    expected = np.zeros((4, 5))
    expected[:, 0] = 1.0
    expected[np.arange(4), np.arange(1, 5)] = -1.0
    np.testing.assert_array_equal(d.coeffs, expected)
    np.testing.assert_array_equal(d.rhs, np.zeros(4))


def test_vnnlib_prop6_or_of_boxes_times_or_of_outputs(shared_data: Path) -> None:
    prop = load_vnnlib(shared_data / "acasxu" / "prop_6.vnnlib")
    assert len(prop.disjuncts) == 8
    assert {tuple(d.lower) for d in prop.disjuncts}.__len__() == 2
    assert all(d.coeffs.shape == (1, 5) for d in prop.disjuncts)


def test_vnnlib_terms_and_nesting() -> None:
    text = """; comment
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(assert (and (>= X_0 -1) (<= X_0 1) (<= (* 2 X_1) 4) (>= X_1 (- 1))))
(assert (or (and (>= (+ Y_0 (* 3 Y_1)) 2.5) (< Y_1 0))
            (<= (- Y_0 Y_1 1) 0)))
"""
    prop = parse_vnnlib(text)
    assert len(prop.disjuncts) == 2
    d0, d1 = prop.disjuncts
    np.testing.assert_allclose(d0.lower, [-1, -1])
    np.testing.assert_allclose(d0.upper, [1, 2])
    np.testing.assert_allclose(d0.coeffs, [[-1, -3], [0, 1]])
    np.testing.assert_allclose(d0.rhs, [-2.5, 0])
    np.testing.assert_allclose(d1.coeffs, [[1, -1]])
    np.testing.assert_allclose(d1.rhs, [1])
    assert prop.is_unsafe(np.zeros(2), np.array([0.5, 0.0]))
    assert not prop.is_unsafe(np.zeros(2), np.array([3.0, 1.0]))
    assert not prop.is_unsafe(np.array([5.0, 0]), np.array([0.5, 0.0]))


def test_yaml_property_example() -> None:
    prop = load_property_yaml(DATA / "governor_property.yaml")
    assert prop.output_names == ("continue", "slow", "stop")
    d = prop.disjuncts[0]
    assert d.lower[0] == 0.5 and d.upper[4] == 1.0 and np.isinf(d.lower[4])
    np.testing.assert_array_equal(d.coeffs, [[-1, 1, 0], [-1, 0, 1]])
    assert prop.is_unsafe(np.array([1.0, 0, 0, 0, 0.5]), np.array([2.0, 1.0, 1.0]))
    assert not prop.is_unsafe(np.array([1.0, 0, 0, 0, 0.5]), np.array([0.0, 1.0, 1.0]))
    again = load_property(DATA / "governor_property.yaml")
    np.testing.assert_array_equal(again.disjuncts[0].coeffs, d.coeffs)


def _yaml(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "inputs": ["a", "b"], "outputs": ["p", "q"],
        "domain": {"lower": [0, 0], "upper": [1, 1]}, "unsafe": [["p >= q"]]}
    base.update(changes)
    return base


BAD_YAML = [
    (_yaml(extra=1), "unknown keys"),
    (_yaml(unsafe=[["p >= r"]]), "unknown output 'r'"),
    (_yaml(unsafe=[["p = q"]]), "exactly one"),
    (_yaml(unsafe=[]), "non-empty list"),
    (_yaml(domain={"lower": [0], "upper": [1, 1]}), "list of 2"),
    (_yaml(domain={"lower": [2, 0], "upper": [1, 1]}), "> upper"),
    (_yaml(inputs=["a", "a"]), "distinct"),
    (_yaml(unsafe=[["2 p >= q"]]), "missing '\\*' between '2' and 'p'"),
    (_yaml(unsafe=[["p q >= 1"]]), "missing '\\+' or '-'"),
    # "0 >= 1" would read as numbers: a false statement, the property vacuously safe
    (_yaml(outputs=["0", "1"], unsafe=[["0 >= 1"]]), "name '0' is not a name"),
    (_yaml(inputs=["a", "speed m/s"]), "name 'speed m/s' is not a name"),
]


def test_yaml_exponent_numbers_read_as_strings_are_numbers(tmp_path: Path) -> None:
    """YAML 1.1 reads 1e9 (no dot) as a string; a tester's domain bound was refused."""
    path = tmp_path / "p.yaml"
    path.write_text("inputs: [a]\noutputs: [b]\ndomain: {lower: [-1e9], upper: [1e9]}\n"
                    "unsafe: [['b >= 5']]\n")
    d = load_property_yaml(path).disjuncts[0]
    assert (d.lower[0], d.upper[0]) == (-1e9, 1e9)
    with pytest.raises(VerificationInputError, match="'nan' is not a finite number"):
        property_from_dict(_yaml(domain={"lower": ["nan", 0], "upper": [1, 1]}), "t.yaml")


@pytest.mark.parametrize(("data", "message"), BAD_YAML)
def test_bad_yaml(data: dict[str, object], message: str) -> None:
    with pytest.raises(VerificationInputError, match=message):
        property_from_dict(data, "t.yaml")


HEAD = "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"
BAD_VNNLIB = [
    (HEAD + "(assert (<= X_0 1)\n", "line 3: '\\(' never closed"),
    (HEAD + "(assert (<= X_0 1)))\n", "line 3: unbalanced"),
    (HEAD + "(assert (<= Z_0 1))\n", "line 3: unknown variable or number 'Z_0'"),
    (HEAD + "(assert (<= X_0 nan))\n", "line 3: 'nan' is not a finite number"),
    (HEAD + "(assert (<= X_0 Y_0))\n", "line 3: constraint mixes inputs and outputs"),
    (HEAD + "(assert (<= (* X_0 X_0) 1))\n", "line 3: product of variables"),
    (HEAD + "(assert (xor (<= X_0 1)))\n", "line 3: unsupported formula head 'xor'"),
    (HEAD + "(assert (<= X_0 1))\n(assert (>= X_0 0))\n(check-sat)\n",
     "line 5: unsupported command 'check-sat'"),
    (HEAD + "(assert (<= X_0 1))\n", "unbounded"),
    ("(declare-const X_0 Real)\n(declare-const W_1 Real)\n", "line 2: variable 'W_1'"),
    (HEAD + "(assert (<= X_0))\n", "line 3: \\(<= a b\\) needs two operands"),
    (HEAD + "(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (or))\n",
     "line 5: \\(or\\) with no operands"),
    # a tester's: Int was read as Real ("sat" at X_0 = 0.5, where no integer violates)
    ("(declare-const X_0 Int)\n(declare-const Y_0 Real)\n",
     "line 1: 'X_0' is declared Int; only Real"),
    (HEAD + "(assert true)\n", "line 3: 'true' is not a formula"),
]


@pytest.mark.parametrize(("text", "message"), BAD_VNNLIB)
def test_bad_vnnlib(text: str, message: str) -> None:
    with pytest.raises(VerificationInputError, match=message):
        parse_vnnlib(text, "bad.vnnlib")


def _bad_onnx_files(tmp: Path, shared: Path) -> list[tuple[Path, str]]:
    out = []
    good = (shared / "acasxu" / "ACASXU_run2a_1_1_batch_2000.onnx").read_bytes()
    truncated = tmp / "truncated.onnx"
    truncated.write_bytes(good[: len(good) // 3])
    out.append((truncated, "not a readable ONNX model|does not run|is not produced"))
    sig = _model([helper.make_node("Sigmoid", ["x"], ["y"], name="act0")],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                 helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3]), [])
    (tmp / "sigmoid.onnx").write_bytes(sig.SerializeToString())
    out.append((tmp / "sigmoid.onnx", "node 0 'act0' \\(Sigmoid\\): unsupported operator"))
    W = numpy_helper.from_array(np.ones((4, 2), np.float32), "W")
    shape = _model([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                   helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2]), [W])
    (tmp / "shape.onnx").write_bytes(shape.SerializeToString())
    out.append((tmp / "shape.onnx", "node 0 'mm' \\(MatMul\\): input shape \\(1, 3\\)"))
    skip = _model([helper.make_node("Relu", ["x"], ["h"], name="r"),
                   helper.make_node("Add", ["h", "x"], ["y"], name="res")],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                  helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3]), [])
    (tmp / "skip.onnx").write_bytes(skip.SerializeToString())
    out.append((tmp / "skip.onnx", "node 1 'res' \\(Add\\): uses 'x' from before a ReLU"))
    # half precision rounds the input (11 significant bits): the bounds do not model it
    half = _model([helper.make_node("Cast", ["x"], ["h"], name="c16", to=TensorProto.FLOAT16),
                   helper.make_node("Cast", ["h"], ["y"], name="c32", to=TensorProto.FLOAT)],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                  helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3]), [])
    (tmp / "half.onnx").write_bytes(half.SerializeToString())
    # a detour through double ends in a rounding back to float, which is not modelled
    double = _model([helper.make_node("Cast", ["x"], ["h"], name="c64", to=TensorProto.DOUBLE),
                     helper.make_node("Cast", ["h"], ["y"], name="c32", to=TensorProto.FLOAT)],
                    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                    helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3]), [])
    (tmp / "double.onnx").write_bytes(double.SerializeToString())
    out.append((tmp / "double.onnx", "node 0 'c64' \\(Cast\\): Cast to type 11 \\(DOUBLE\\)"))
    dinput = _model([helper.make_node("Relu", ["x"], ["y"])],
                    [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1, 3])],
                    helper.make_tensor_value_info("y", TensorProto.DOUBLE, [1, 3]), [])
    zero = numpy_helper.from_array(np.array([[1.0, 0.0, 2.0]], np.float32), "k")
    div0 = _model([helper.make_node("Div", ["x", "k"], ["y"], name="d")],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                  helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3]), [zero])
    (tmp / "div0.onnx").write_bytes(div0.SerializeToString())
    out.append((tmp / "div0.onnx",
                "node 0 'd' \\(Div\\): divides by a constant with zero entries"))
    (tmp / "dinput.onnx").write_bytes(dinput.SerializeToString())
    out.append((tmp / "dinput.onnx", "input 'x' has element type 11; expected float"))
    out.append((tmp / "half.onnx", "node 0 'c16' \\(Cast\\): Cast to type 10 \\(FLOAT16\\)"))
    out.append((tmp / "missing.onnx", "does not exist"))
    out.append((tmp / "missing.nnet", "does not exist"))
    (tmp / "folder.onnx").mkdir()
    out.append((tmp / "folder.onnx", "is not a file"))
    (tmp / "empty.onnx").write_bytes(b"")
    out.append((tmp / "empty.onnx", "is empty \\(0 bytes\\)"))
    (tmp / "net.txt").write_text("x")
    out.append((tmp / "net.txt", "suffix '.txt'"))
    lines = (shared / "acasxu" / "nnet" / "ACASXU_run2a_1_1_batch_2000.nnet").read_text()
    (tmp / "short.nnet").write_text("\n".join(lines.splitlines()[:200]))
    out.append((tmp / "short.nnet", "ends early after line 200"))
    bad_lines = lines.splitlines()
    bad_lines[10] = "1.0,abc,2.0,"
    (tmp / "onnx.nnet").write_bytes(good)
    out.append((tmp / "onnx.nnet", "onnx.nnet' is not text"))
    (tmp / "word.nnet").write_text("\n".join(bad_lines))
    out.append((tmp / "word.nnet", "line 11: .* is not a list of numbers"))
    return out


def test_bad_network_files(tmp_path: Path, shared_data: Path) -> None:
    for path, message in _bad_onnx_files(tmp_path, shared_data):
        with pytest.raises(VerificationInputError, match=message):
            load_network(path)


def test_property_that_does_not_fit_the_network(shared_data: Path) -> None:
    from meetup_ros.verification.bab import verify

    net = load_network(shared_data / "acasxu" / "ACASXU_run2a_1_1_batch_2000.onnx")
    prop = load_property_yaml(DATA / "governor_property.yaml")
    with pytest.raises(VerificationInputError, match="3 outputs but network"):
        verify(net, prop, 1.0)
    with pytest.raises(VerificationInputError, match="does not exist"):
        load_property(shared_data / "acasxu" / "prop_99.vnnlib")
    with pytest.raises(VerificationInputError, match=r"suffix '\.txt'"):
        load_property("p.txt")


def test_vnnlib_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    """A Latin-1 comment is ignored like any comment; binary garbage names its line."""
    latin = tmp_path / "latin.vnnlib"
    latin.write_bytes("; Temp\xe9rature en \xb0C\n".encode("latin-1")
                      + b"(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"
                      b"(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (<= Y_0 0))\n")
    assert load_vnnlib(latin).n_inputs == 1
    garbage = tmp_path / "garbage.vnnlib"
    garbage.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(VerificationInputError, match=r"garbage\.vnnlib' line 1"):
        load_vnnlib(garbage)


def test_empty_input_box_is_unsat_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    text = ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"
            "(assert (<= X_0 0))\n(assert (>= X_0 1))\n(assert (<= Y_0 0))\n")
    with caplog.at_level("WARNING"):
        prop = parse_vnnlib(text, "typo.vnnlib")
    assert all(np.any(d.lower > d.upper) for d in prop.disjuncts)
    assert "typo.vnnlib: every input box of the property is empty" in caplog.text


def test_offline_verify_of_a_property_without_a_box_names_the_file() -> None:
    """The runtime form of the governor property has no box of its own (the monitor fills it
    from the state); verifying it offline is an error naming the file, not a crash."""
    from meetup_ros.verification.bab import verify

    repo = Path(__file__).resolve().parent.parent
    net = load_network(repo / "models" / "governor.onnx")
    prop = load_property_yaml(repo / "config" / "governor_property.yaml")
    with pytest.raises(VerificationInputError, match=r"governor_property\.yaml' disjunct 0: "
                                                     r"inputs \[.*\] are unbounded"):
        verify(net, prop, 1.0)


def test_property_file_that_is_not_text_is_named(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"input:\xff\xfe\n")
    with pytest.raises(VerificationInputError, match=r"binary\.yaml' is not UTF-8 text"):
        load_property_yaml(path)


def test_vnnlib_decimals_are_exact_and_bounds_round_outward() -> None:
    """A tester's 0.03 X_0 >= 0.9 with X_0 <= 30: the one point x = 30, which float
    division made 30.000000000000004 and an empty (so "unsat") box."""
    prop = parse_vnnlib(HEAD + "(assert (>= (* 0.03 X_0) 0.9))\n(assert (<= X_0 30))\n"
                               "(assert (>= Y_0 29.5))\n", "point.vnnlib")
    (d,) = prop.disjuncts
    assert d.lower[0] <= 30.0 <= d.upper[0]
    # 1/3 is no float: the box holds it (rounded down below, up above)
    prop = parse_vnnlib(HEAD + "(assert (>= (* 3 X_0) 1))\n(assert (<= (* 3 X_0) 1))\n"
                               "(assert (<= Y_0 0.1))\n", "third.vnnlib")
    (d,) = prop.disjuncts
    from fractions import Fraction
    assert Fraction(d.lower[0]) <= Fraction(1, 3) <= Fraction(d.upper[0])
    assert d.lower[0] < d.upper[0]
    # the output bound 0.1 (no float) rounds up: the unsafe set read holds the written one
    assert Fraction(d.rhs[0]) >= Fraction(1, 10)


def test_vnnlib_keeps_each_disjunct_as_written() -> None:
    """The proof reads bounds rounded outward and strict ones as non-strict; a counterexample
    is checked against the atoms as written, which the reader keeps beside them."""
    from fractions import Fraction

    prop = parse_vnnlib(HEAD + "(assert (>= X_0 0.50000000000000000001))\n"
                               "(assert (< (* 4 X_0) 3))\n"
                               "(assert (< Y_0 0.99999999999999999999))\n"
                               "(assert (<= 0 0))\n", "written.vnnlib")
    (d,) = prop.disjuncts
    assert d.lower[0] == 0.5 and d.rhs[0] == 1.0  # read outward, as before
    exact = d.exact_form()
    assert exact.contains_input(np.array([0.6])) and not exact.contains_input(np.array([0.5]))
    assert d.upper[0] == 0.75 and not exact.contains_input(np.array([0.75]))  # 4 X_0 < 3
    assert not exact.unsafe_output(np.array([1.0])) and exact.unsafe_output(np.array([0.5]))
    assert any(r.bound == -Fraction("0.50000000000000000001") for r in exact.inputs)
    # 0 < 0 is read as 0 <= 0 (the proof's superset) but is false as written
    (d,) = parse_vnnlib(HEAD + "(assert (>= X_0 0))\n(assert (<= X_0 1))\n"
                               "(assert (< 0 0))\n", "false.vnnlib").disjuncts
    assert not d.exact_form().unsafe_output(np.array([0.0]))
    # a YAML property keeps its constraints as written too (its box is float64 already)
    (d,) = property_from_dict({"inputs": ["a"], "outputs": ["b"],
                               "domain": {"lower": [0.0], "upper": [1.0]},
                               "unsafe": [["b + 1000000000.3 <= 1000000000.8"]]}).disjuncts
    assert d.exact is not None and d.exact.outputs[0].bound == Fraction(1, 2)
    assert d.exact_form().unsafe_output(np.array([0.5]))
    assert not d.exact_form().unsafe_output(np.array([0.5 + 2**-52]))
    assert not d.exact_form().contains_input(np.array([1.0 + 2**-52]))
    # a disjunct built in code has no written form: its float one is checked, as read
    d = Disjunct(np.zeros(1), np.ones(1), np.ones((1, 1)), np.array([0.5]))
    assert d.exact is None and d.exact_form().unsafe_output(np.array([0.5]))
    assert not d.exact_form().contains_input(np.array([1.0 + 2**-52]))


@pytest.mark.parametrize("number", ["1_0", "\u0661", "nan", "inf", "0x10", "1e999"])
def test_vnnlib_numbers_are_ascii_decimals(number: str) -> None:
    with pytest.raises(VerificationInputError, match="line 3"):
        parse_vnnlib(HEAD + f"(assert (<= X_0 {number}))\n(assert (>= X_0 0))\n",
                     "number.vnnlib")


def test_vnnlib_output_rows_are_exact_integers_or_refused() -> None:
    """A third tester's 1.0000000000000001 Y_1 was read as Y_1, which shrank the unsafe set;
    1e-400 Y_0 <= -1e-400 was read as 0 <= -0, a wrong "sat"."""
    head = "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
    box = "(assert (>= X_0 0))\n(assert (<= X_0 1))\n"
    (d,) = parse_vnnlib(head + box + "(assert (<= (* 0.1 Y_0) 0.3))\n", "a.vnnlib").disjuncts
    assert d.coeffs.tolist() == [[1.0, 0.0]] and d.rhs.tolist() == [3.0]
    (d,) = parse_vnnlib(head + box + "(assert (<= (* 1e-400 Y_0) -1e-400))\n",
                        "b.vnnlib").disjuncts
    assert d.coeffs.tolist() == [[1.0, 0.0]] and d.rhs.tolist() == [-1.0]
    (d,) = parse_vnnlib(head + box + "(assert (<= (- Y_0 (* 3 Y_1)) 1.5))\n",
                        "c.vnnlib").disjuncts
    assert d.coeffs.tolist() == [[1.0, -3.0]] and d.rhs.tolist() == [1.5]
    with pytest.raises(VerificationInputError, match="line 6: output coefficients that"):
        parse_vnnlib(head + box + "(assert (<= (- Y_0 (* 1.0000000000000001 Y_1)) -3))\n",
                     "d.vnnlib")


def test_vnnlib_huge_exponents_are_refused_at_once() -> None:
    """1e200000000 took minutes to build as an exact number (no error, no timeout)."""
    import time

    start = time.perf_counter()
    with pytest.raises(VerificationInputError, match="line 3: '1e200000000': exponent"):
        parse_vnnlib(HEAD + "(assert (<= X_0 1e200000000))\n(assert (>= X_0 0))\n", "e.vnnlib")
    assert time.perf_counter() - start < 1.0


def test_vnnlib_deep_nesting_and_long_numbers_are_named() -> None:
    """A fourth tester's: 'internal error: RecursionError' and Python's 4300-digit limit,
    neither naming the file."""
    deep = "(+ " * 5000 + "X_0" + ")" * 5000
    with pytest.raises(VerificationInputError, match=r"'deep\.vnnlib': .*nested too deeply"):
        parse_vnnlib(HEAD + f"(assert (<= {deep} 1))\n(assert (>= X_0 0))\n", "deep.vnnlib")
    with pytest.raises(VerificationInputError, match=r"line 3: .*too many digits"):
        parse_vnnlib(HEAD + f"(assert (<= X_0 {'9' * 5000}))\n(assert (>= X_0 0))\n",
                     "long.vnnlib")


def test_vnnlib_growing_products_are_refused_at_once() -> None:
    """A product of 6000 factors of 1e300 took 87 s to read (not bounded by --timeout): the
    exact value is refused once it needs more than _MAX_BITS bits, flat or nested."""
    import time

    flat = "(* " + " ".join(["1e300"] * 6000) + " X_0)"
    nested = "(* 1e300 " * 400 + "X_0" + ")" * 400
    for name, term in (("flat", flat), ("nested", nested)):
        start = time.perf_counter()
        with pytest.raises(VerificationInputError, match=r"line 3: .*too many digits"):
            parse_vnnlib(HEAD + f"(assert (<= {term} 1))\n(assert (>= X_0 0))\n",
                         f"{name}.vnnlib")
        assert time.perf_counter() - start < 1.0, name
    # a product that stays small is read exactly: 1e300 * 1e-300 * 2 X_0 <= 1 is X_0 <= 0.5
    (d,) = parse_vnnlib(HEAD + "(assert (<= (* 1e300 1e-300 2 X_0) 1))\n(assert (>= X_0 0))\n",
                        "small.vnnlib").disjuncts
    assert d.upper.tolist() == [0.5]


def test_odd_encodings_shapes_and_numbers_are_named(tmp_path: Path) -> None:
    """A fifth tester's: a UTF-16 property said "'\ufffd\ufffd' outside parentheses", an ONNX
    input of shape [0, 1] was an onnxruntime "internal error", an .nnet "1_0" read as 10, and
    (* 1e-320 Y_0) <= 1 said only "bound beyond the float64 range"."""
    from onnx import TensorProto, helper

    text = HEAD + "(assert (<= X_0 1))\n(assert (>= X_0 0))\n"
    utf16 = tmp_path / "utf16.vnnlib"
    utf16.write_bytes(text.encode("utf-16"))
    with pytest.raises(VerificationInputError, match="UTF-16"):
        load_vnnlib(utf16)
    bom = tmp_path / "bom.vnnlib"  # a UTF-8 byte-order mark is no reason to refuse a file
    bom.write_bytes(text.encode("utf-8-sig"))
    assert load_vnnlib(bom).n_inputs == 1
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "empty",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [0, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [0, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    (tmp_path / "empty.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(VerificationInputError, match="empty dimension"):
        load_network(tmp_path / "empty.onnx")
    nnet = tmp_path / "underscore.nnet"
    nnet.write_text("1,1,1,1,\n1,1,\n0,\n1_0,\n0,\n0,\n1,\n1,\n1.0,\n0.0,\n")
    with pytest.raises(VerificationInputError, match=r"line 4: .*not a list of numbers"):
        load_nnet(nnet)
    with pytest.raises(VerificationInputError, match=r"line 5: bound beyond the float64 range "
                                                     r"\(scaled .* about 10\^320\)"):
        parse_vnnlib(text + "(assert (<= (* 1e-320 Y_0) 1))\n", "tiny.vnnlib")


def test_vnnlib_dnf_past_the_cap_is_refused_before_it_is_built() -> None:
    """A sixth tester's: two asserts, each a 3000-way or, built 9 million conjunctions
    (15 s, 1.2 GB) before the 10000-disjunct check."""
    import time

    ors = "(assert (or " + " ".join(f"(<= X_0 {i})" for i in range(3000)) + "))\n"
    start = time.perf_counter()
    with pytest.raises(VerificationInputError, match=r"more than 10000 disjuncts in DNF "
                                                     r"\(3000 x 3000\)"):
        parse_vnnlib(HEAD + "(assert (>= X_0 0))\n" + ors + ors, "wide.vnnlib")
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_a_non_finite_onnx_weight_is_named_without_numpy_warnings(
        tmp_path: Path, bad: float) -> None:
    """An inf weight made numpy warn three times ("invalid value encountered in matmul")
    before the layer was named as non-finite (a tester's); a NaN one did not."""
    import warnings

    W = np.array([[1.0, 0.0], [bad, 2.0]], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "b"], ["y"], transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(W, "W"),
         numpy_helper.from_array(np.zeros(2, dtype=np.float32), "b")])
    path = tmp_path / "inf.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(VerificationInputError, match=r"layer 0: non-finite weights"):
            load_network(path)
