"""Reluplex NNet text format reader.

Layout: ``//`` comment lines; ``numLayers,inputSize,outputSize,maxLayerSize``; the layer
sizes; a (legacy) symmetric flag; input minimums; input maximums; means (inputs then the
output); ranges (inputs then the output); then for each layer its weight rows and its bias
values, one per line. ReLU follows every layer but the last.

The normalisation in the header is NOT folded in by default: the weights act on normalised
inputs and give normalised outputs, which is what the VNN-COMP ONNX files and vnnlib bounds
use. ``load_nnet(path, normalize=True)`` folds it in to act on raw inputs and give raw outputs.

Proofs cover a float32 evaluation of the file's decimal weights (rounded to float32 first),
which also bounds the reference reader's float64 one; with ``normalize=True`` the
normalisation's own operations are rounded too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from meetup_ros.verification import VerificationInputError, exact, require_file
from meetup_ros.verification.network import Network
from meetup_ros.verification.rounding import FLOAT32, Tracked


def _numbers(line: str, lineno: int, source: str, expected: int | None = None) -> list[float]:
    parts = [p for p in line.replace(",", " ").split() if p]
    # ASCII decimals only: float() would read "1_0" as 10 and take non-ASCII digits
    if not all(exact.NUMBER.fullmatch(p) for p in parts):
        raise VerificationInputError(
            f"{source!r} line {lineno}: {line.strip()[:80]!r} is not a list of numbers"
        )
    values = [float(p) for p in parts]
    if expected is not None and len(values) != expected:
        raise VerificationInputError(
            f"{source!r} line {lineno}: {len(values)!r} values; expected {expected!r}"
        )
    return values


def load_nnet(path: str | Path, normalize: bool = False) -> Network:
    """Read an ``.nnet`` file.

    Raises:
        VerificationInputError: missing file, wrong counts or non-numeric values (names the
            line).
    """
    path = require_file(path, "network file")
    source = str(path)
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise VerificationInputError(
            f"network file {source!r} is not text (byte {exc.start} is not UTF-8); expected "
            "the .nnet text format (an ONNX model needs the .onnx suffix)") from exc
    lines = [(i, ln) for i, ln in enumerate(text.splitlines(), start=1)
             if ln.strip() and not ln.lstrip().startswith("//")]
    pos = 0

    def take(expected: int | None = None) -> list[float]:
        nonlocal pos
        if pos >= len(lines):
            raise VerificationInputError(
                f"{source!r}: ends early after line {lines[-1][0] if lines else 0}; expected "
                "more header, weight or bias lines"
            )
        lineno, text = lines[pos]
        pos += 1
        return _numbers(text, lineno, source, expected)

    header = take(4)
    n_layers, n_in, n_out, _ = (int(v) for v in header)
    if n_layers < 1 or n_in < 1 or n_out < 1:
        raise VerificationInputError(f"{source!r} line {lines[0][0]}: header {header!r}")
    sizes = [int(v) for v in take(n_layers + 1)]
    if sizes[0] != n_in or sizes[-1] != n_out:
        raise VerificationInputError(
            f"{source!r} line {lines[1][0]}: layer sizes {sizes!r} disagree with inputs "
            f"{n_in!r} / outputs {n_out!r}"
        )
    take()  # symmetric flag (unused by every reader)
    x_min = np.array(take(n_in))
    x_max = np.array(take(n_in))
    means = np.array(take(n_in + 1))
    ranges = np.array(take(n_in + 1))
    weights, biases = [], []
    for k in range(n_layers):
        W = np.array([take(sizes[k]) for _ in range(sizes[k + 1])])
        b = np.array([take(1)[0] for _ in range(sizes[k + 1])])
        weights.append(W)
        biases.append(b)
    if pos != len(lines):
        raise VerificationInputError(
            f"{source!r} line {lines[pos][0]}: unexpected extra content after the last layer"
        )
    net = Network(weights, biases, source=source, source_kind="nnet")
    if not normalize:
        return net
    if np.any(ranges == 0):
        raise VerificationInputError(f"{source!r}: zero range in {ranges.tolist()!r}")
    # x_norm = (x - mean) / range into the first layer, y = y_norm * range + mean into the
    # last (the same layer for a single-layer net); clipping to [x_min, x_max] is the
    # caller's job.
    # Each layer is followed operation by operation (normalise, product, bias, denormalise),
    # which gives the folded weights and the rounding of the evaluation as written.
    del x_min, x_max
    ws, bs, rounding = [], [], []
    for k, (W, b) in enumerate(zip(weights, biases, strict=True)):
        t = Tracked.identity(W.shape[1], FLOAT32)
        if k == 0:
            t = t.add_const(-means[:n_in]).scale(ranges[:n_in], divide=True)
        t = t.matmul_last(W.T, (1, W.shape[1])).add_const(b)
        if k == n_layers - 1:
            t = t.scale(np.full(n_out, ranges[n_in])).add_const(np.full(n_out, means[n_in]))
        ws.append(t.M)
        bs.append(t.c)
        rounding.append(t.layer())
    return Network(ws, bs, source=source, source_kind="nnet", rounding=rounding)
