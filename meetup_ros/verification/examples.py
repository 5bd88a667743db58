"""Small hand-built networks with known answers, for tests, demos and the monitor's defaults.

``governor_demo_network(safe=True)`` is a 5 -> 8 -> 8 -> 3 ReLU speed governor over
(forward, lateral, vertical speed, yaw rate, nearest depth) scoring (continue, slow, stop).
With ``safe=True`` "continue" provably never wins when depth <= 1 m and forward speed >= 0.5
m/s (a = relu(2 - depth) >= 1 there pushes continue to <= -1 while slow >= 0.5); with
``safe=False`` it does win near depth = 1 m, forward speed = 0.5 m/s. Weights are float32
exact so an ONNX copy evaluates identically up to float32 rounding. Random "distractor" units
with small weights keep the bounds from being trivially exact.
"""

from __future__ import annotations

import itertools

import numpy as np

from meetup_ros.verification.network import Network


def governor_demo_network(safe: bool = True, seed: int = 0) -> Network:
    """The hand-built governor (see module docstring)."""
    rng = np.random.default_rng(seed)
    # Layer 1: features a = relu(2 - depth), b = relu(v_f), c = relu(depth - 2) + 5 distractors.
    W1 = np.zeros((8, 5))
    b1 = np.zeros(8)
    W1[0, 4], b1[0] = -1.0, 2.0
    W1[1, 0] = 1.0
    W1[2, 4], b1[2] = 1.0, -2.0
    W1[3:] = np.round(rng.normal(0, 0.5, (5, 5)), 3)
    b1[3:] = np.round(rng.normal(0, 0.2, 5), 3)
    # Layer 2: pass a, b, c through (they are >= 0), mix the distractors.
    W2 = np.zeros((8, 8))
    b2 = np.zeros(8)
    W2[0, 0] = W2[1, 1] = W2[2, 2] = 1.0
    W2[3:, 3:] = np.round(rng.normal(0, 0.5, (5, 5)), 3)
    b2[3:] = np.round(rng.normal(0, 0.1, 5), 3)
    # Output: continue = 1 + 0.5 c - k_a a, slow = 0.5 + 0.2 b, stop = -0.5 + k_s a (+ tiny noise).
    W3 = np.zeros((3, 8))
    k_a, k_s = (2.0, 1.5) if safe else (0.2, 0.5)
    W3[0, 0], W3[0, 2] = -k_a, 0.5
    W3[1, 1] = 0.2
    W3[2, 0] = k_s
    W3[:, 3:] = np.round(rng.normal(0, 0.01, (3, 5)), 4)
    b3 = np.array([1.0, 0.5, -0.5])
    def f32(v: np.ndarray) -> np.ndarray:
        return np.asarray(v, dtype=np.float32).astype(np.float64)

    return Network([f32(W1), f32(W2), f32(W3)], [f32(b1), f32(b2), f32(b3)],
                   source="governor_demo", source_kind="memory")


def random_relu_network(sizes: list[int], seed: int, scale: float = 1.0) -> Network:
    """A random ReLU MLP with layer sizes ``sizes`` (float32-exact weights), fixed seed."""
    rng = np.random.default_rng(seed)
    weights, biases = [], []
    for n_in, n_out in itertools.pairwise(sizes):
        W = rng.normal(0, scale / np.sqrt(n_in), (n_out, n_in)).astype(np.float32)
        b = rng.normal(0, 0.1, n_out).astype(np.float32)
        weights.append(W.astype(np.float64))
        biases.append(b.astype(np.float64))
    return Network(weights, biases, source=f"random{sizes}-seed{seed}")
