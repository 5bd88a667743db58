"""ONNX -> :class:`Network` by symbolic execution of the graph on one input vector.

Every tensor is either a constant (numpy) or an affine function ``t = M h + c`` of the
current "stage" ``h`` (the network input, or the output of the latest ReLU). A ``Relu``
closes the stage into an affine layer; constants feeding ``Sub``/``Add``/``Mul``/``Div``,
``Flatten``/``Reshape`` and chains of ``MatMul``/``Gemm`` fold into the affine map. The graph
must be a chain (no tensor from an earlier stage is used after a ReLU).

Supported: Gemm, MatMul, Add, Sub, Mul, Div (by constants), Neg, Relu, Flatten, Reshape,
Squeeze, Unsqueeze, Identity, Constant, Cast (of the input's values: to float only; of
constants: float16/float/double or int32/int64, applied). The input must be float32. Constants
keep their type, and elementwise arithmetic between them is done in it as onnxruntime does it
(floats correctly rounded; integers wrap, and their Div truncates toward zero); a MatMul of
two constants is refused (its value depends on the kernel's summation order). Only the
standard ONNX domain is read: a node in another domain, or a model with local functions
(where "Relu" may be defined as anything), is refused. Initializers that are also listed as
graph inputs (old exporters) are constants. A model onnxruntime cannot load is refused.

Each input-dependent operation is also followed in float32 (:class:`rounding.Tracked`): the
network comes with the rounding of its evaluation as the graph writes it, operation by
operation, which the bounds carry so that a proof covers onnxruntime's float32 result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from meetup_ros.verification import VerificationInputError, require_file
from meetup_ros.verification.network import Network
from meetup_ros.verification.rounding import FLOAT32, LayerRounding, Tracked

logger = logging.getLogger(__name__)


@dataclass
class _Sym:
    """``value = M @ h + c`` reshaped to ``shape`` (batch dimension kept as 1), with its
    float32 rounding (``t``)."""

    stage: int
    t: Tracked
    shape: tuple[int, ...]


def _attrs(node: Any) -> dict[str, object]:
    """An ONNX ``NodeProto``'s attributes by name."""
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def load_onnx(path: str | Path) -> Network:
    """Load an ONNX feed-forward ReLU network (one input, one output).

    Raises:
        VerificationInputError: unreadable file, several inputs/outputs, an unsupported
            operator (named with its node), or a non-chain graph.
    """
    import onnx
    from onnx import numpy_helper

    path = require_file(path, "network file")
    if path.stat().st_size == 0:
        raise VerificationInputError(f"network file {str(path)!r} is empty (0 bytes)")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf raises DecodeError, onnx its own types
        raise VerificationInputError(
            f"network file {str(path)!r} is not a readable ONNX model: {exc}"
        ) from exc
    graph = model.graph
    name = str(path)
    _check_standard_operators(model, name)
    produced_by = {o: i for i, n in enumerate(graph.node) for o in n.output}
    values: dict[str, np.ndarray | _Sym] = {}
    # Constants keep their own type: arithmetic between constants is folded in it, as
    # onnxruntime computes it (a tester's c1 * c1 - c3 is 0 in float32 and 2^-46 in float64,
    # which a weight of 1e30 made 1.4e16 apart). Only input-dependent maps are float64.
    for init in graph.initializer:
        values[init.name] = numpy_helper.to_array(init)
    real_inputs = [i for i in graph.input if i.name not in values]
    if len(real_inputs) != 1 or len(graph.output) != 1:
        raise VerificationInputError(
            f"network {name!r}: {len(real_inputs)!r} inputs and {len(graph.output)!r} outputs; "
            "expected exactly one of each"
        )
    elem = real_inputs[0].type.tensor_type.elem_type
    if elem != onnx.TensorProto.FLOAT:
        raise VerificationInputError(
            f"network {name!r}: input {real_inputs[0].name!r} has element type "
            f"{elem!r}"
            "; expected float (32): the verifier models a float32 graph")
    dims = real_inputs[0].type.tensor_type.shape.dim
    if any(d.HasField("dim_value") and d.dim_value <= 0 for d in dims):
        raise VerificationInputError(
            f"network {name!r}: input {real_inputs[0].name!r} has shape "
            f"{[d.dim_value if d.HasField('dim_value') else d.dim_param for d in dims]!r}; "
            "expected no empty dimension")
    in_shape = tuple(int(d.dim_value) if d.dim_value > 0 else 1 for d in dims)
    if not in_shape:
        raise VerificationInputError(f"network {name!r}: input has no shape")
    n_in = int(np.prod(in_shape))
    values[real_inputs[0].name] = _Sym(0, Tracked.identity(n_in, FLOAT32), in_shape)
    weights: list[np.ndarray] = []
    biases: list[np.ndarray] = []
    rounding: list[LayerRounding] = []
    stage = 0
    quotients: set[str] = set()

    for index, node in enumerate(graph.node):
        label = f"node {index} {node.name!r} ({node.op_type})"

        def get(i: int, node: object = node, label: str = label, stage: int = stage
                ) -> np.ndarray | _Sym:
            inputs = node.input  # type: ignore[attr-defined]
            if i >= len(inputs) or inputs[i] == "":
                raise VerificationInputError(f"network {name!r} {label}: missing input {i}")
            if inputs[i] not in values:
                later = produced_by.get(inputs[i])
                raise VerificationInputError(
                    f"network {name!r} {label}: input {inputs[i]!r} is not produced earlier"
                    + (f" (node {later} produces it: the nodes are not in topological order, "
                       "which ONNX requires)" if later is not None else ""))
            v = values[inputs[i]]
            if isinstance(v, _Sym) and v.stage != stage:
                raise VerificationInputError(
                    f"network {name!r} {label}: uses {inputs[i]!r} from before a ReLU; only "
                    "sequential (chain) graphs are supported"
                )
            return v

        op = node.op_type
        attrs = _attrs(node)
        try:
            # An inf weight times a zero made numpy warn three times before the Network's
            # own check named the layer as non-finite (a tester's): that check is the message
            with np.errstate(invalid="ignore", over="ignore"):
                out = _apply(op, attrs, node, get, label, name,
                             divided=any(i in quotients for i in node.input))
        except VerificationInputError:
            raise
        except Exception as exc:  # numpy broadcasting/shape errors in a malformed graph
            raise VerificationInputError(
                f"network {name!r} {label}: cannot evaluate ({exc})"
            ) from exc
        if op == "Relu" and isinstance(out, _Sym):
            x = out
            weights.append(x.t.M)
            biases.append(x.t.c)
            rounding.append(x.t.layer())
            stage += 1
            size = x.t.M.shape[0]
            out = _Sym(stage, Tracked.identity(size, FLOAT32), x.shape)
        if len(node.output) != 1:
            raise VerificationInputError(
                f"network {name!r} {label}: {len(node.output)!r} outputs; expected 1"
            )
        values[node.output[0]] = out
        # constants that are folded quotients, followed through shape-only nodes: a Mul by
        # one may run as the division itself (onnxruntime's DivMulFusion, basic level)
        if not isinstance(out, _Sym) and (
                op == "Div" or (op in _PASS_THROUGH and node.input
                                and node.input[0] in quotients)):
            quotients.add(node.output[0])

    out_name = graph.output[0].name
    result = values.get(out_name)
    if not isinstance(result, _Sym) or result.stage != stage:
        raise VerificationInputError(
            f"network {name!r}: output {out_name!r} is not a function of the input's last stage"
        )
    weights.append(result.t.M)
    biases.append(result.t.c)
    rounding.append(result.t.layer())
    logger.debug("loaded %s: layers %s", name, [w.shape for w in weights])
    network = Network(weights, biases, source=name, source_kind="onnx", precision="float32",
                      rounding=rounding)
    _check_onnxruntime_runs(path, name)
    _warn_on_scale_fusion(graph, values, name)
    return network


def _check_standard_operators(model: Any, name: str) -> None:
    """Every node must be a standard ONNX operator, read by its schema.

    A node is interpreted by its op_type; in another domain, or defined by a model-local
    function, the same name can mean anything (a tester's ``Relu`` in domain 'evil' was a
    Neg inside, which onnxruntime ran and the verifier read as a ReLU: a wrong "unsat").
    """
    if len(model.functions):
        raise VerificationInputError(
            f"network {name!r}: defines model-local functions "
            f"{sorted(f.name for f in model.functions)!r}; only standard ONNX operators are "
            "supported (inline them, e.g. onnx.inliner.inline_local_functions)")
    for index, node in enumerate(model.graph.node):
        if node.domain not in ("", "ai.onnx"):
            raise VerificationInputError(
                f"network {name!r} node {index} {node.name!r} ({node.op_type}): operator "
                f"domain {node.domain!r}; only the standard ONNX domain is supported")


def _check_onnxruntime_runs(path: Path, name: str) -> None:
    """A proof about a model onnxruntime refuses to load is a proof about nothing that runs
    (a tester's double constant added to the float input: types onnxruntime rejects)."""
    from meetup_ros.verification.falsify import _ort_session

    try:
        _ort_session(str(path))
    except Exception as exc:  # onnxruntime's own Fail/InvalidGraph/NotImplemented types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VerificationInputError(
            f"network {name!r}: onnxruntime cannot load it ({first}); the verifier "
            "proves properties of what onnxruntime runs") from exc


# Nodes onnxruntime's basic level removes before the extended level fuses: a scale and a
# MatMul with these between them still fuse (a tester's Mul -> Identity/Cast -> MatMul).
_PASS_THROUGH = ("Identity", "Cast", "Reshape", "Flatten", "Squeeze", "Unsqueeze")


def _warn_on_scale_fusion(graph: Any, values: dict[str, Any], name: str) -> None:
    """Say when onnxruntime's extended optimisations would evaluate another graph than the
    one proven: a Mul/Div by a scalar constant next to a MatMul becomes one FusedMatMul.
    Pass-through nodes between them are looked through (the warning errs on the side of
    saying it)."""
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def upstream_matmul(tensor: str) -> bool:
        node = producers.get(tensor)
        while node is not None and node.op_type in _PASS_THROUGH and node.input:
            node = producers.get(node.input[0])
        return node is not None and node.op_type == "MatMul"

    def downstream_matmul(tensor: str, depth: int = 0) -> bool:
        for n in consumers.get(tensor, []):
            if n.op_type == "MatMul":
                return True
            if (n.op_type in _PASS_THROUGH and n.input and n.input[0] == tensor
                    and depth < 64 and downstream_matmul(n.output[0], depth + 1)):
                return True
        return False

    for node in graph.node:
        if node.op_type not in ("Mul", "Div"):
            continue
        scalar = any(not isinstance(values.get(i), _Sym) and values.get(i) is not None
                     and np.size(values[i]) == 1 for i in node.input)
        near = any(upstream_matmul(i) for i in node.input) or downstream_matmul(node.output[0])
        if scalar and near:
            logger.warning(
                "network %r: %s %r by a scalar next to a MatMul: onnxruntime's extended graph "
                "optimisations fuse them (FusedMatMul), which rounds differently from this "
                "graph; the proof holds for sessions at graph_optimization_level basic "
                "(falsify.ort_session_options)", name, node.op_type, node.name)
            return


def _fold_constants(op: str, a: np.ndarray, b: np.ndarray, label: str, name: str
                    ) -> np.ndarray:
    """Add/Sub/Mul/Div of two constants in their own type, as onnxruntime computes them.

    Floats: one correctly rounded operation in their precision. Integers: wrapping
    arithmetic, and Div truncates toward zero (C++'s /), not numpy's true or floor division
    (a tester's int64 7 / 2 read as 3.5, and 2^62 + 1 - 2^62 as 0 through float64, both
    wrong "unsat"s).
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype:
        raise VerificationInputError(
            f"network {name!r} {label}: {op} of constants of types {a.dtype} and {b.dtype}; "
            "ONNX requires one type")
    integer = bool(np.issubdtype(a.dtype, np.integer))
    if not integer and a.dtype not in (np.float32, np.float64):
        # float16: onnxruntime's CPU has no half kernels and computes in float, keeping or
        # dropping the casts around as its optimisations decide (a tester's 1 + 2^-11)
        raise VerificationInputError(
            f"network {name!r} {label}: {op} of constants of type {a.dtype}; supported: "
            "float, double and integer types (cast half constants to float first)")
    if op == "Div" and integer:
        return _integer_division(a, b, label, name)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # integers wrap
        if op == "Add":
            return a + b
        if op == "Sub":
            return a - b
        if op == "Mul":
            return a * b
        return a / b


def _integer_division(a: np.ndarray, b: np.ndarray, label: str, name: str) -> np.ndarray:
    """``a / b`` truncated toward zero, in Python integers: exact, and |minimum| does not
    wrap."""
    if np.any(b == 0):
        raise VerificationInputError(
            f"network {name!r} {label}: integer division by a constant with zero entries")
    a, b = np.broadcast_arrays(a, b)
    q = [abs(int(x)) // abs(int(y)) * (-1 if (x < 0) != (y < 0) else 1)
         for x, y in zip(a.reshape(-1), b.reshape(-1), strict=True)]
    info = np.iinfo(a.dtype)
    if any(not info.min <= v <= info.max for v in q):
        raise VerificationInputError(
            f"network {name!r} {label}: integer division overflows {a.dtype}")
    return np.array(q, dtype=a.dtype).reshape(a.shape)


def _const(v: np.ndarray | _Sym, label: str, name: str, what: str) -> np.ndarray:
    if isinstance(v, _Sym):
        raise VerificationInputError(
            f"network {name!r} {label}: {what} depends on the input; expected a constant"
        )
    return v


def _broadcast_vec(v: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Constant broadcast to the symbolic tensor's shape, flattened (row-major)."""
    out = np.broadcast_to(np.asarray(v, dtype=np.float64), shape)
    if out.shape != shape:
        raise ValueError(f"constant of shape {np.shape(v)!r} broadcasts the input to "
                         f"{out.shape!r}")
    return out.reshape(-1)


def _matmul_sym(x: _Sym, W: np.ndarray, label: str, name: str) -> _Sym:
    """``x @ W`` with ``W (k, m)`` applied on the last axis of ``x``."""
    if W.ndim != 2 or x.shape[-1] != W.shape[0]:
        raise VerificationInputError(
            f"network {name!r} {label}: input shape {x.shape!r} @ weight {W.shape!r}; "
            "expected a 2-D weight matching the last axis"
        )
    return _Sym(x.stage, x.t.matmul_last(W, x.shape), (*x.shape[:-1], W.shape[1]))


def _apply(op, attrs, node, get, label, name, divided=False):
    if op == "Constant":
        from onnx import numpy_helper

        if "value" not in attrs:
            raise VerificationInputError(f"network {name!r} {label}: only 'value' constants")
        return numpy_helper.to_array(attrs["value"])
    if op == "Cast":
        from onnx import TensorProto

        to = int(attrs.get("to", 0))
        x = get(0)
        exact: dict[int, Any] = {int(TensorProto.FLOAT16): np.float16,
                                 int(TensorProto.FLOAT): np.float32,
                                 int(TensorProto.DOUBLE): np.float64}
        if not isinstance(x, _Sym) and to == int(TensorProto.FLOAT16):
            # onnxruntime converts to half through float: a double is rounded twice (a
            # tester's 1 + 2^-11 + 2^-40 is 1.0 there, 1.0009766 rounded once)
            return np.asarray(x).astype(np.float32).astype(np.float16)
        if not isinstance(x, _Sym) and to in exact:
            return np.asarray(x).astype(exact[to])  # a constant: the cast itself, exactly
        integers: dict[int, Any] = {int(TensorProto.INT64): np.int64,
                                    int(TensorProto.INT32): np.int32}
        if not isinstance(x, _Sym):
            if to not in integers:
                raise VerificationInputError(
                    f"network {name!r} {label}: Cast of a constant to type {attrs.get('to')!r}; "
                    "supported: float16, float, double, int32, int64")
            value = np.asarray(x)
            if not np.all(np.isfinite(value)):
                raise VerificationInputError(
                    f"network {name!r} {label}: Cast of a non-finite constant to an integer")
            return np.trunc(value).astype(integers[to])  # toward zero, as onnxruntime
        # A float32 value cast to float is itself. To half precision it is rounded (11
        # significant bits), and a detour through double ends in a rounding back to float
        # (a tester's (float(double(x) + 1e-9) - x) * 1e12 is 0 in onnxruntime, 1000 in
        # exact arithmetic): the bounds model neither, so a proof would be about another
        # network than the one onnxruntime runs.
        if to != TensorProto.FLOAT:
            named = to in TensorProto.DataType.values()
            raise VerificationInputError(
                f"network {name!r} {label}: Cast to type {attrs.get('to')!r} "
                f"({TensorProto.DataType.Name(to) if named else 'unknown'})"
                " of a value that depends on the input; only casts to float (32) are supported "
                "(others round or change values, which the verifier does not model)")
        return x
    if op == "Identity":
        return get(0)
    if op == "Relu":
        x = get(0)
        if not isinstance(x, _Sym):
            return np.maximum(x, np.zeros((), np.asarray(x).dtype))  # in the constant's type
        return x
    if op in ("Add", "Sub"):
        a, b = get(0), get(1)
        sign = 1.0 if op == "Add" else -1.0
        if not isinstance(a, _Sym) and not isinstance(b, _Sym):
            return _fold_constants(op, a, b, label, name)
        if isinstance(a, _Sym) and isinstance(b, _Sym):
            if a.shape != b.shape:
                raise VerificationInputError(
                    f"network {name!r} {label}: shapes {a.shape!r} and {b.shape!r} differ"
                )
            return _Sym(a.stage, a.t.add(b.t, sign), a.shape)
        if isinstance(a, _Sym):  # a - b rounds as a + (-b)
            return _Sym(a.stage, a.t.add_const(sign * _broadcast_vec(b, a.shape)), a.shape)
        assert isinstance(b, _Sym)
        tb = b.t if sign > 0 else b.t.neg()
        return _Sym(b.stage, tb.add_const(_broadcast_vec(a, b.shape)), b.shape)
    if op in ("Mul", "Div"):
        a, b = get(0), get(1)
        if not isinstance(a, _Sym) and not isinstance(b, _Sym):
            if op == "Mul" and divided:
                # DivMulFusion runs before constant folding: onnxruntime computes c / d, not
                # c * (1 / d) (a tester's 10 * (1 / 3) is 3 there in int64, 0 here)
                raise VerificationInputError(
                    f"network {name!r} {label}: a Mul of constants by a folded quotient "
                    "(Div(1, d)): onnxruntime may compute it as one division; fold it into "
                    "one initializer")
            return _fold_constants(op, a, b, label, name)
        if op == "Div" and isinstance(b, _Sym):
            raise VerificationInputError(f"network {name!r} {label}: division by the input")
        if isinstance(a, _Sym) and isinstance(b, _Sym):
            raise VerificationInputError(
                f"network {name!r} {label}: product of two input-dependent tensors"
            )
        x, k = (a, b) if isinstance(a, _Sym) else (b, a)
        assert isinstance(x, _Sym)
        k64 = np.asarray(k, dtype=np.float64)  # x / k, not x * float32(1 / k)
        if op == "Div" and np.any(k64 == 0):
            raise VerificationInputError(
                f"network {name!r} {label}: divides by a constant with zero entries")
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite: refused by Network
            return _Sym(x.stage, x.t.scale(_broadcast_vec(k64, x.shape), divide=op == "Div",
                                           exact_factor=not (op == "Mul" and divided)),
                        x.shape)
    if op == "Neg":
        x = get(0)
        if not isinstance(x, _Sym):
            return -x
        return _Sym(x.stage, x.t.neg(), x.shape)
    if op == "MatMul":
        a, b = get(0), get(1)
        if not isinstance(a, _Sym) and not isinstance(b, _Sym):
            if np.ndim(a) >= 1 and np.shape(a)[-1] > 1:
                # A sum of products in float32 depends on the kernel's order: a tester's
                # [1e8, 1 (x15), -1e8] . ones is 15 in numpy and 0 in onnxruntime.
                raise VerificationInputError(
                    f"network {name!r} {label}: a MatMul of two constants (inner size "
                    f"{np.shape(a)[-1]}): its float32 value depends on onnxruntime's summation "
                    "order, which the verifier cannot know; fold it into one initializer "
                    "(e.g. torch.onnx.export(..., do_constant_folding=True))")
            return a @ b
        if not isinstance(a, _Sym):
            raise VerificationInputError(
                f"network {name!r} {label}: constant @ input is unsupported; expected input @ W"
            )
        return _matmul_sym(a, np.asarray(_const(b, label, name, "the weight"), np.float64),
                           label, name)
    if op == "Gemm":
        a = get(0)
        B = _const(get(1), label, name, "B")
        alpha = float(attrs.get("alpha", 1.0))
        beta = float(attrs.get("beta", 1.0))
        if not isinstance(a, _Sym):
            raise VerificationInputError(f"network {name!r} {label}: Gemm on constants only")
        if int(attrs.get("transA", 0)):
            raise VerificationInputError(f"network {name!r} {label}: transA=1 is unsupported")
        if len(a.shape) != 2:
            raise VerificationInputError(
                f"network {name!r} {label}: Gemm input shape {a.shape!r}; expected 2-D"
            )
        B = np.asarray(B, dtype=np.float64)
        W = B.T if int(attrs.get("transB", 0)) else B
        out = _matmul_sym(a, W, label, name)
        if alpha != 1.0:  # alpha * (x @ B): one more rounding; C still joins the sum
            scaled = out.t.scale(np.full(out.t.M.shape[0], alpha))
            out = _Sym(out.stage, replace(scaled, sum_gamma=out.t.sum_gamma), out.shape)
        if len(node.input) > 2 and node.input[2]:
            C = _broadcast_vec(_const(get(2), label, name, "C"), out.shape)
            t = out.t.add_const(beta * C)
            if beta != 1.0:  # beta * C is rounded before it is added
                t = replace(t, g=t.g + FLOAT32.unit * np.abs(beta * C))
            out = _Sym(out.stage, t, out.shape)
        return out
    if op in ("Flatten", "Reshape", "Squeeze", "Unsqueeze"):
        x = get(0)
        if op == "Flatten":
            axis = int(attrs.get("axis", 1))
            shape = x.shape if isinstance(x, _Sym) else np.shape(x)
            axis = axis if axis >= 0 else axis + len(shape)
            new: tuple[int, ...] = (int(np.prod(shape[:axis])), int(np.prod(shape[axis:])))
        elif op == "Reshape":
            target = [int(v) for v in _const(get(1), label, name, "the shape").reshape(-1)]
            shape = x.shape if isinstance(x, _Sym) else np.shape(x)
            target = [shape[i] if t == 0 else t for i, t in enumerate(target)]
            if target.count(-1) > 1:
                raise VerificationInputError(f"network {name!r} {label}: shape {target!r}")
            if -1 in target:
                known = int(np.prod([t for t in target if t != -1]))
                target[target.index(-1)] = int(np.prod(shape)) // max(known, 1)
            new = tuple(target)
        else:
            axes = attrs.get("axes")
            if axes is None and len(node.input) > 1:
                axes = [int(v) for v in _const(get(1), label, name, "axes").reshape(-1)]
            shape = x.shape if isinstance(x, _Sym) else np.shape(x)
            if op == "Squeeze":
                new = tuple(
                    d for i, d in enumerate(shape)
                    if not (d == 1 and (axes is None or i in [a % len(shape) for a in axes]))
                )
            else:
                new_list = list(shape)
                for a in sorted(int(v) % (len(shape) + len(axes)) for v in axes or []):
                    new_list.insert(a, 1)
                new = tuple(new_list)
        if not isinstance(x, _Sym):
            return np.reshape(x, new)
        if int(np.prod(new)) != x.t.M.shape[0]:
            raise VerificationInputError(
                f"network {name!r} {label}: cannot reshape {x.shape!r} to {new!r}"
            )
        return _Sym(x.stage, x.t, tuple(int(d) for d in new))
    raise VerificationInputError(
        f"network {name!r} {label}: unsupported operator {op!r}; supported: Gemm, MatMul, Add, "
        "Sub, Mul, Div, Neg, Relu, Flatten, Reshape, Squeeze, Unsqueeze, Identity, Constant, Cast"
    )


def save_onnx(network: Network, path: str | Path, input_name: str = "input",
              output_name: str = "output") -> Path:
    """Write ``network`` as a float32 Gemm/Relu chain with a free batch dimension."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    path = Path(path)
    inits, nodes = [], []
    current = input_name
    last = len(network.weights) - 1
    for i, (W, b) in enumerate(zip(network.weights, network.biases, strict=True)):
        inits.append(numpy_helper.from_array(W.astype(np.float32), f"W{i}"))
        inits.append(numpy_helper.from_array(b.astype(np.float32), f"b{i}"))
        out = output_name if i == last else f"z{i}"
        nodes.append(helper.make_node("Gemm", [current, f"W{i}", f"b{i}"], [out],
                                      name=f"gemm{i}", transB=1))
        if i < last:
            nodes.append(helper.make_node("Relu", [out], [f"h{i}"], name=f"relu{i}"))
            current = f"h{i}"
    graph = helper.make_graph(
        nodes, "meetup_ros_verification",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT,
                                       ["batch", network.n_inputs])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT,
                                       ["batch", network.n_outputs])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path
