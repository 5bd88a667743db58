"""The verifier's network: affine layers with a ReLU between consecutive ones.

Every supported file reduces to ``y = W_L relu(... relu(W_1 x + b_1) ...) + b_L``; the
weights are kept in float64 so that bounds and counterexample checks do not inherit float32
rounding. The deployed evaluation's rounding comes with it, per layer (``rounding``, see
:mod:`rounding`), so that a proof covers the network as onnxruntime runs it.
``layers()`` exposes the chain as a list of :class:`AffineLayer`/:class:`ReluLayer`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from meetup_ros.verification import VerificationInputError, require_file
from meetup_ros.verification.rounding import FORMATS, LayerRounding, affine_rounding

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AffineLayer:
    """``y = weight @ x + bias``; weight ``(out, in)``, bias ``(out,)`` float64."""

    weight: np.ndarray
    bias: np.ndarray


@dataclass(frozen=True)
class ReluLayer:
    """Element-wise ``max(x, 0)`` over ``size`` values."""

    size: int


@dataclass
class Network:
    """Affine layers ``weights[i], biases[i]`` with ReLU after all but the last.

    Args:
        weights: ``[(out_i, in_i)]`` float64 matrices, ``in_{i+1} == out_i``.
        biases: ``[(out_i,)]`` float64 vectors.
        source: the file it came from (for messages and the onnxruntime re-check).
        source_kind: ``"onnx"``, ``"nnet"`` or ``"memory"``.
        precision: the format the deployed network is evaluated in, ``"float32"`` or
            ``"float64"``; proofs cover its rounding (:mod:`rounding`).
        rounding: per layer, the rounding of its evaluation in that format; None: each layer
            as one matrix product and one bias addition (a loader that knows the file's
            operations passes its own).
    Raises:
        VerificationInputError: shapes do not chain or values are not finite.
    """

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    source: str = "<memory>"
    source_kind: str = "memory"
    precision: str = "float32"
    rounding: list[LayerRounding] | None = None
    _torch_cache: dict[tuple[str, torch.dtype], list[tuple[torch.Tensor, torch.Tensor]]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not self.weights or len(self.weights) != len(self.biases):
            raise VerificationInputError(
                f"network {self.source!r}: {len(self.weights)!r} weight matrices and "
                f"{len(self.biases)!r} bias vectors; expected equal non-zero counts"
            )
        weights: list[np.ndarray] = []
        biases: list[np.ndarray] = []
        for i, (W, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            W = np.array(W, dtype=np.float64)
            b = np.array(b, dtype=np.float64).reshape(-1)
            if W.ndim != 2 or b.shape != (W.shape[0],):
                raise VerificationInputError(
                    f"network {self.source!r} layer {i}: weight shape {W.shape!r}, bias shape "
                    f"{b.shape!r}; expected (out, in) and (out,)"
                )
            if i > 0 and W.shape[1] != weights[-1].shape[0]:
                raise VerificationInputError(
                    f"network {self.source!r} layer {i}: takes {W.shape[1]!r} inputs but the "
                    f"previous layer gives {weights[-1].shape[0]!r}"
                )
            if not (np.isfinite(W).all() and np.isfinite(b).all()):
                raise VerificationInputError(
                    f"network {self.source!r} layer {i}: non-finite weights or biases"
                )
            weights.append(W)
            biases.append(b)
        self.weights, self.biases = weights, biases
        if self.precision not in FORMATS:
            raise VerificationInputError(
                f"network {self.source!r}: precision {self.precision!r}; expected one of "
                f"{sorted(FORMATS)!r}")
        if self.rounding is None:
            fmt = FORMATS[self.precision]
            self.rounding = [affine_rounding(W, b, fmt) for W, b in zip(weights, biases,
                                                                         strict=True)]
        shapes = [(r.G.shape, r.g.shape) for r in self.rounding]
        if shapes != [(W.shape, b.shape) for W, b in zip(weights, biases, strict=True)]:
            raise VerificationInputError(
                f"network {self.source!r}: rounding shapes {shapes!r} do not match the layers")

    # -- shape --------------------------------------------------------------------------
    @property
    def n_inputs(self) -> int:
        return int(self.weights[0].shape[1])

    @property
    def n_outputs(self) -> int:
        return int(self.weights[-1].shape[0])

    @property
    def hidden_sizes(self) -> list[int]:
        """Sizes of the ReLU layers."""
        return [int(W.shape[0]) for W in self.weights[:-1]]

    def layers(self) -> list[AffineLayer | ReluLayer]:
        """The chain as alternating affine and ReLU layers."""
        out: list[AffineLayer | ReluLayer] = []
        for i, (W, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            out.append(AffineLayer(W, b))
            if i < len(self.weights) - 1:
                out.append(ReluLayer(int(W.shape[0])))
        return out

    # -- evaluation ---------------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        """float64 forward pass: ``(n,)`` -> ``(m,)`` or ``(B, n)`` -> ``(B, m)``."""
        h = np.asarray(x, dtype=np.float64)
        single = h.ndim == 1
        h = h.reshape(-1, self.n_inputs) if single else h
        if h.ndim != 2 or h.shape[1] != self.n_inputs:
            raise VerificationInputError(
                f"network {self.source!r}: input shape {np.shape(x)!r}; expected "
                f"({self.n_inputs},) or (B, {self.n_inputs})"
            )
        last = len(self.weights) - 1
        for i, (W, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ W.T + b
            if i < last:
                h = np.maximum(h, 0.0)
        return h[0] if single else h

    def torch_layers(
        self, dtype: torch.dtype = torch.float64, device: str = "cpu"
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``[(W (out, in), b (out,))]`` as tensors, cached per dtype/device."""
        key = (device, dtype)
        if key not in self._torch_cache:
            self._torch_cache[key] = [
                (torch.as_tensor(W, dtype=dtype, device=device),
                 torch.as_tensor(b, dtype=dtype, device=device))
                for W, b in zip(self.weights, self.biases, strict=True)
            ]
        return self._torch_cache[key]

    def torch_rounding(
        self, dtype: torch.dtype = torch.float64, device: str = "cpu"
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``[(G (out, in), g (out,))]`` per layer as tensors: the error bound of each
        pre-activation's float evaluation is ``G |h| + g`` (:mod:`rounding`)."""
        key = ("rounding:" + device, dtype)
        if key not in self._torch_cache:
            assert self.rounding is not None
            self._torch_cache[key] = [
                (torch.as_tensor(r.G, dtype=dtype, device=device),
                 torch.as_tensor(r.g, dtype=dtype, device=device)) for r in self.rounding
            ]
        return self._torch_cache[key]

    def forward_torch(self, x: torch.Tensor) -> torch.Tensor:
        """Batched torch forward ``(B, n)`` -> ``(B, m)`` in ``x``'s dtype (differentiable)."""
        h = x
        layers = self.torch_layers(x.dtype, str(x.device))
        for i, (W, b) in enumerate(layers):
            h = h @ W.T + b
            if i < len(layers) - 1:
                h = torch.relu(h)
        return h

    def with_output_map(self, coeffs: np.ndarray, offset: np.ndarray) -> Network:
        """The network ``coeffs @ f(x) + offset`` (a spec layer folded into the last layer).

        Args:
            coeffs: ``(k, m)``; offset: ``(k,)``.
        """
        coeffs = np.asarray(coeffs, dtype=np.float64)
        offset = np.asarray(offset, dtype=np.float64).reshape(-1)
        if coeffs.ndim != 2 or coeffs.shape[1] != self.n_outputs or offset.shape != (
            coeffs.shape[0],
        ):
            raise VerificationInputError(
                f"output map shapes {coeffs.shape!r}, {offset.shape!r}; expected "
                f"(k, {self.n_outputs}) and (k,)"
            )
        weights = [*self.weights[:-1], coeffs @ self.weights[-1]]
        biases = [*self.biases[:-1], coeffs @ self.biases[-1] + offset]
        assert self.rounding is not None
        # the map is applied exactly: it states something about the float outputs
        rounding = [*self.rounding[:-1], self.rounding[-1].through(coeffs)]
        return Network(weights, biases, source=self.source, source_kind=self.source_kind,
                       precision=self.precision, rounding=rounding)


def load_network(path: str | Path) -> Network:
    """Load ``.onnx`` or ``.nnet`` into a :class:`Network`.

    Raises:
        VerificationInputError: missing file, unknown suffix, malformed or unsupported graph.
    """
    path = require_file(path, "network file")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from meetup_ros.verification.onnx_loader import load_onnx

        return load_onnx(path)
    if suffix == ".nnet":
        from meetup_ros.verification.nnet import load_nnet

        return load_nnet(path)
    raise VerificationInputError(
        f"network file {str(path)!r} has suffix {suffix!r}; expected '.onnx' or '.nnet'"
    )
