"""The deployed network's floating-point rounding, as a bounded error at every pre-activation.

A proof about ``W_L relu(... relu(W_1 x + b_1) ...) + b_L`` in exact arithmetic says nothing
certain about the same network run in float32 by onnxruntime: each operation rounds, and a
property that holds by less than that error can fail in the deployed network (a tester's
network with weights of 1e8 was proven and violated). So the verifier proves the property
for every network within the rounding error of the exact one instead.

Each affine block (the operations between two ReLUs, as written in the file) is evaluated in
a floating-point format with unit roundoff ``u``. Its float result ``z~`` differs from the
exact affine map of the block's float input ``h~`` by

    |z~ - (M h~ + c)| <= G |h~| + g        (elementwise; G, g >= 0)

The ReLU itself is exact, so the float network is the exact network with an additive error
``e_k``, ``|e_k| <= G_k |h~_(k-1)| + g_k``, at every pre-activation; the bounds carry it
(``bounds.crown``, the MIP encoding) with ``|h~|`` bounded by the layer's own (perturbed)
bounds. Per operation (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed.,
sections 2.2 and 3.1):

- a dot product of ``n`` terms: ``|fl(w.t) - w.t| <= gamma_n |w|.|t|`` with
  ``gamma_n = n u / (1 - n u)``, whatever the summation order, with or without FMA; blocked
  or vectorised kernels only reorder the sum. Four more terms of slack (``gamma_(n+4)``)
  cover a kernel that folds the following bias into the sum (onnxruntime's MatMul + Add ->
  Gemm at its basic optimisation level). Every product and partial sum is bounded too:
  3e38 + 3e38 overflows on the way to a result that cancels;
- an addition, subtraction, multiplication or division by a constant: one rounding, ``u``
  times the result's magnitude;
- every product or sum may also underflow (or be flushed to zero): at most the smallest
  normal number, ``tiny``, per operation;
- Neg, Reshape, Flatten, Identity and a Cast from float to float are exact.

Magnitudes are tracked too (``|t~| <= K |h~| + k``), for the next operation's error and for
overflow: a block whose values could pass the format's largest number is never proven
(:meth:`LayerRounding.peak`).

Not modelled: a runtime that rewrites the graph further, so that other values are rounded
than the file's operations. onnxruntime's extended level does (FusedMatMul folds scalar
Mul/Div around a MatMul into one factor), so this project's sessions run at the basic level
(``falsify.ort_session_options``) and the loader warns where the extended level would fuse.
A MatMul of two constants is refused: its float32 value depends on the kernel's summation
order. The bounds' own float64 arithmetic is not modelled either: it is 2^29 times finer than
this allowance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FloatFormat:
    """A binary floating-point format as the rounding model needs it."""

    name: str
    unit: float  # unit roundoff u: |fl(a op b) - a op b| <= u |a op b| without underflow
    tiny: float  # smallest normal number: the most an underflow or a flush to zero loses
    largest: float  # the largest finite number

    def holds(self, v: np.ndarray) -> bool:
        """Whether every value of ``v`` (float64) is a number of this format."""
        if self.name == "float64":
            return True
        v = np.asarray(v, dtype=np.float64)
        with np.errstate(over="ignore"):
            return bool(np.array_equal(v.astype(np.float32).astype(np.float64), v))

    def gamma(self, n: int) -> float:
        """``gamma_n = n u / (1 - n u)``, the bound on a sum of ``n`` rounded terms."""
        nu = n * self.unit
        if nu >= 0.5:
            return float("inf")
        return nu / (1.0 - nu)


FLOAT32 = FloatFormat("float32", 2.0**-24, 2.0**-126, float(np.finfo(np.float32).max))
FLOAT64 = FloatFormat("float64", 2.0**-53, 2.0**-1022, float(np.finfo(np.float64).max))
FORMATS = {f.name: f for f in (FLOAT32, FLOAT64)}


@dataclass(frozen=True)
class LayerRounding:
    """One affine layer's rounding: float pre-activation within ``G |h| + g`` of exact.

    ``peak_coeff @ |h| + peak_const`` bounds every value computed inside the block (its overflow
    check). ``h`` is the block's float input: the network input, or the last ReLU's output.
    """

    G: np.ndarray  # (out, in) >= 0
    g: np.ndarray  # (out,) >= 0
    peak_coeff: np.ndarray  # (in,) >= 0
    peak_const: float

    def error(self, h_abs: np.ndarray) -> np.ndarray:
        """The error bound ``G |h| + g`` for ``|h| <= h_abs`` (``(in,)`` or ``(B, in)``)."""
        return h_abs @ self.G.T + self.g

    def peak(self, h_abs: np.ndarray) -> float:
        """The largest magnitude any value inside the block can reach for ``|h| <= h_abs``."""
        return float(np.max(h_abs @ self.peak_coeff) + self.peak_const)

    def through(self, coeffs: np.ndarray) -> LayerRounding:
        """The rounding of ``coeffs @ z`` when ``coeffs`` is applied exactly (a property's
        margins are statements about the float outputs, not computed in float)."""
        C = np.abs(np.asarray(coeffs, dtype=np.float64))
        return LayerRounding(C @ self.G, C @ self.g, self.peak_coeff, self.peak_const)


@dataclass(frozen=True)
class Tracked:
    """A tensor of one block (flattened): exact value ``M h + c`` of the block's input ``h``,
    float value within ``G |h| + g`` of it; ``P |h| + p`` bounds it and everything computed
    before it in the block."""

    M: np.ndarray  # (size, n)
    c: np.ndarray  # (size,)
    G: np.ndarray  # (size, n)
    g: np.ndarray  # (size,)
    P: np.ndarray  # (n,)
    p: float
    fmt: FloatFormat
    # gamma of the dot product this value comes from (0 if its last operation was another):
    # a bias added to it is added inside that sum by onnxruntime's Gemm (MLAS puts C in the
    # output first and adds the product 256 terms at a time: C is rounded once per block; a
    # tester's 2^24 + 8 came out 2^24 with K = 2048), so the addition is charged that gamma
    sum_gamma: float = 0.0

    @staticmethod
    def identity(n: int, fmt: FloatFormat) -> Tracked:
        return Tracked(np.eye(n), np.zeros(n), np.zeros((n, n)), np.zeros(n), np.ones(n), 0.0,
                       fmt)

    # -- magnitudes -------------------------------------------------------------------------
    def _magnitude(self) -> tuple[np.ndarray, np.ndarray]:
        """``(K, k)`` with ``|float value| <= K |h| + k``."""
        return np.abs(self.M) + self.G, np.abs(self.c) + self.g

    def _with(self, M: np.ndarray, c: np.ndarray, G: np.ndarray, g: np.ndarray,
              others: tuple[Tracked, ...] = (),
              inside: tuple[np.ndarray, np.ndarray] | None = None,
              sum_gamma: float = 0.0) -> Tracked:
        """A new tensor; its peak also covers its own magnitude, its operands' peaks and
        ``inside`` (``(K, k)``: what the operation computes on the way, e.g. a dot
        product's partial sums)."""
        P, p = self.P, self.p
        for K, k in ((np.abs(M) + G, np.abs(c) + g), *(() if inside is None else (inside,))):
            if K.shape[0]:
                P = np.maximum(P, K.max(0))
            p = max(p, float(k.max()) if k.size else 0.0)
        for o in others:
            P, p = np.maximum(P, o.P), max(p, o.p)
        return Tracked(M, c, G, g, P, p, self.fmt, sum_gamma)

    # -- operations -------------------------------------------------------------------------
    def matmul_last(self, W: np.ndarray, shape: tuple[int, ...]) -> Tracked:
        """``t @ W`` on the last axis of a tensor of ``shape``, ``W (k, m)`` constant."""
        rows = int(np.prod(shape[:-1]))
        k, m = W.shape
        K, kk = self._magnitude()
        gam = self.fmt.gamma(k + 4)
        if not self.fmt.holds(W):  # weights rounded to the format first: one more u
            gam = gam * (1 + self.fmt.unit) + self.fmt.unit
        absW = np.abs(W)

        def apply(A: np.ndarray, Wm: np.ndarray) -> np.ndarray:  # (rows*k, n) -> (rows*m, n)
            return np.einsum("rks,km->rms", A.reshape(rows, k, -1), Wm).reshape(rows * m, -1)

        M = apply(self.M, W)
        c = (self.c.reshape(rows, k) @ W).reshape(-1)
        G = apply(self.G + gam * K, absW)
        g = ((self.g + gam * kk).reshape(rows, k) @ absW).reshape(-1) + k * self.fmt.tiny
        # every product and partial sum is at most sum |w| |t| (times 1 + gamma): the result
        # can be small by cancellation while 3e38 + 3e38 on the way is inf (a tester's)
        partial = (apply(K, absW) * (1 + gam), (kk.reshape(rows, k) @ absW).reshape(-1)
                   * (1 + gam))
        return self._with(M, c, G, g, inside=partial, sum_gamma=gam)

    def add_const(self, v: np.ndarray) -> Tracked:
        """``t + v``, ``v`` a constant vector of the tensor's size."""
        K, k = self._magnitude()
        u = self.fmt.unit
        v_err = 0.0 if self.fmt.holds(v) else 2 * u * np.abs(v)  # v rounded to the format
        u = max(u, self.sum_gamma)  # added inside a dot product (see sum_gamma)
        return self._with(self.M, self.c + v, self.G + u * K,
                          self.g + u * (k + np.abs(v)) + v_err + self.fmt.tiny)

    def add(self, other: Tracked, sign: float = 1.0) -> Tracked:
        """``t + other`` (``sign`` -1: ``t - other``), both of this block."""
        K1, k1 = self._magnitude()
        K2, k2 = other._magnitude()
        u = max(self.fmt.unit, self.sum_gamma, other.sum_gamma)  # see sum_gamma
        return self._with(self.M + sign * other.M, self.c + sign * other.c,
                          self.G + other.G + u * (K1 + K2),
                          self.g + other.g + u * (k1 + k2) + self.fmt.tiny, (other,))

    def scale(self, s: np.ndarray, divide: bool = False, exact_factor: bool = True
              ) -> Tracked:
        """``t * s`` or ``t / s`` elementwise, ``s`` a constant vector (finite, and non-zero
        for a division): one rounding of the correctly rounded product or quotient.
        ``exact_factor=False``: ``s`` is itself a rounded quotient that the runtime may
        replace by the division it came from (onnxruntime's DivMulFusion turns x * (1 / d)
        into x / d at the basic level): one more u, as for a factor the format cannot hold."""
        factor = 1.0 / s if divide else s
        a = np.abs(factor)
        K, k = self._magnitude()
        u = self.fmt.unit
        if not exact_factor or not self.fmt.holds(s):  # one more u (and its u)
            u = 2 * u + u * u
        return self._with(self.M * factor[:, None], self.c * factor,
                          a[:, None] * (self.G + u * K), a * (self.g + u * k) + self.fmt.tiny)

    def neg(self) -> Tracked:
        return self._with(-self.M, -self.c, self.G, self.g)

    def layer(self) -> LayerRounding:
        """This tensor as a block's output: its rounding and the block's peak."""
        return LayerRounding(self.G.copy(), self.g.copy(), self.P.copy(), self.p)


def affine_rounding(W: np.ndarray, b: np.ndarray, fmt: FloatFormat) -> LayerRounding:
    """``W h + b`` evaluated as one matrix product and one bias addition in ``fmt`` (weights
    the format cannot hold are rounded to it first)."""
    W = np.asarray(W, dtype=np.float64)
    t = Tracked.identity(W.shape[1], fmt).matmul_last(W.T, (1, W.shape[1]))
    return t.add_const(np.asarray(b, dtype=np.float64)).layer()
