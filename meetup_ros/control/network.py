"""The speed governor MLP (5 -> 32 -> 32 -> 3, ReLU), its ONNX export and its runtime.

Training works on normalised inputs; the export folds the normalisation into the first
layer (W' = W / std, b' = b - W' mean) so that the ONNX file is a plain Gemm/Relu chain on
the raw state, the very graph the safety monitor verifies and the controller node runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from meetup_ros.control import ControlError
from meetup_ros.control.state import ADVISORIES, STATE_NAMES

INPUT_NAME = "state"
OUTPUT_NAME = "advisory_scores"
ONNX_OPSET = 13


class GovernorNet(nn.Module):
    """Scores for (continue, slow, stop) from the 5-value state; input normalised inside."""

    input_mean: torch.Tensor
    input_std: torch.Tensor

    def __init__(
        self,
        mean: np.ndarray | None = None,
        std: np.ndarray | None = None,
        hidden: int = 32,
    ) -> None:
        super().__init__()
        n_in, n_out = len(STATE_NAMES), len(ADVISORIES)
        mean_t = torch.zeros(n_in) if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        std_t = torch.ones(n_in) if std is None else torch.as_tensor(std, dtype=torch.float32)
        if mean_t.shape != (n_in,) or std_t.shape != (n_in,) or bool((std_t <= 0).any()):
            raise ControlError(f"mean {mean!r} and std {std!r} must be ({n_in},), std > 0")
        self.register_buffer("input_mean", mean_t)
        self.register_buffer("input_std", std_t)
        self.layers = nn.Sequential(
            nn.Linear(n_in, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, n_out),
        )

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        """``(B, 5)`` raw states -> ``(B, 3)`` scores."""
        return self.layers((state - self.input_mean) / self.input_std)

    def folded_layers(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """``[(W (out, in), b (out,)), ...]`` float64 with the normalisation folded in."""
        linears = [m for m in self.layers if isinstance(m, nn.Linear)]
        out: list[tuple[np.ndarray, np.ndarray]] = []
        for i, linear in enumerate(linears):
            W = linear.weight.detach().double().numpy().copy()
            b = linear.bias.detach().double().numpy().copy()
            if i == 0:
                std = self.input_std.double().numpy()
                mean = self.input_mean.double().numpy()
                W = W / std[None, :]
                b = b - W @ mean
            out.append((W, b))
        return out


def export_onnx(net: GovernorNet, path: str | Path, doc: str = "") -> Path:
    """Write ``net`` as a Gemm/Relu chain (float32, input ``state`` (N, 5)); returns the path."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    layers = net.folded_layers()
    initializers, nodes = [], []
    current = INPUT_NAME
    for i, (W, b) in enumerate(layers):
        w_name, b_name = f"layer{i}.weight", f"layer{i}.bias"
        initializers.append(numpy_helper.from_array(W.astype(np.float32), w_name))
        initializers.append(numpy_helper.from_array(b.astype(np.float32), b_name))
        last = i == len(layers) - 1
        gemm_out = OUTPUT_NAME if last else f"layer{i}.gemm"
        nodes.append(helper.make_node(
            "Gemm", [current, w_name, b_name], [gemm_out], name=f"gemm{i}", transB=1
        ))
        if not last:
            nodes.append(helper.make_node("Relu", [gemm_out], [f"layer{i}.relu"], name=f"relu{i}"))
            current = f"layer{i}.relu"
    float32 = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "speed_governor",
        [helper.make_tensor_value_info(INPUT_NAME, float32, ["batch", len(STATE_NAMES)])],
        [helper.make_tensor_value_info(OUTPUT_NAME, float32, ["batch", len(ADVISORIES)])],
        initializers,
    )
    model = helper.make_model(
        graph,
        producer_name="meetup_ros.control",
        opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
    )
    model.ir_version = 8  # readable by onnxruntime releases well before the installed one
    model.doc_string = doc or (
        f"speed governor; inputs {list(STATE_NAMES)}, outputs {list(ADVISORIES)}"
    )
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from meetup_ros.training.checkpoint import atomic_write_bytes

    atomic_write_bytes(path, model.SerializeToString())
    return path


class GovernorRuntime:
    """Runs an exported governor (or any ONNX network) with onnxruntime on one thread.

    ``input_size`` and ``output_size`` are read at load; :meth:`require_sizes` checks them.
    """

    def __init__(self, path: str | Path) -> None:
        import onnxruntime as ort

        from meetup_ros.verification.falsify import ort_session_options

        self.path = Path(path)
        if not self.path.is_file():
            raise ControlError(f"controller network {str(self.path)!r} does not exist")
        # the options the verifier's proofs assume (graph rewrites it models only)
        options = ort_session_options()
        try:
            self._session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ControlError(
                f"controller network {str(self.path)!r} is not a loadable ONNX model: {exc}"
            ) from exc
        graph_inputs = self._session.get_inputs()
        self._input = graph_inputs[0]
        last = self._input.shape[-1] if self._input.shape else None
        if not isinstance(last, int) or last < 1:
            raise ControlError(
                f"controller network {str(self.path)!r} has input {self._input.name!r} of shape "
                f"{self._input.shape!r}; expected a fixed size last dimension"
            )
        self.input_size = last
        # The output size is what one run gives (a declared shape may be symbolic or wrong).
        try:
            probe = self.scores(np.zeros(self.input_size))
        except Exception as exc:  # onnxruntime's own error types, or a shape mismatch
            raise ControlError(
                f"controller network {str(self.path)!r} fails on a zero state of "
                f"{self.input_size!r} values: {exc}"
            ) from exc
        self.output_size = int(probe.size)

    def require_sizes(
        self, inputs: tuple[str, ...] = STATE_NAMES, outputs: tuple[str, ...] = ADVISORIES
    ) -> None:
        """Raise ControlError unless the network maps ``len(inputs)`` values to
        ``len(outputs)`` scores (e.g. an ACAS Xu network, 5 -> 5, is not a governor)."""
        if self.input_size != len(inputs) or self.output_size != len(outputs):
            raise ControlError(
                f"controller network {str(self.path)!r} takes {self.input_size!r} inputs and "
                f"gives {self.output_size!r} scores; expected {len(inputs)} inputs "
                f"{list(inputs)!r} and {len(outputs)} scores {list(outputs)!r}"
            )

    def scores(self, state: np.ndarray) -> np.ndarray:
        """``(n,)`` state -> ``(m,)`` scores (float64)."""
        x = np.asarray(state, dtype=np.float32).reshape(1, -1)
        if x.shape[1] != self.input_size:
            raise ControlError(
                f"state has {x.shape[1]!r} values, network {self.path.name!r} expects "
                f"{self.input_size!r}"
            )
        shape = [1 if not isinstance(d, int) else d for d in self._input.shape]
        (out,) = self._session.run(None, {self._input.name: x.reshape(shape)})[:1]
        return np.asarray(out, dtype=np.float64).reshape(-1)

    def scores_batch(self, states: np.ndarray) -> np.ndarray:
        """``(B, n)`` -> ``(B, m)``; needs a network with a free batch dimension."""
        x = np.asarray(states, dtype=np.float32)
        (out,) = self._session.run(None, {self._input.name: x})[:1]
        return np.asarray(out, dtype=np.float64)
