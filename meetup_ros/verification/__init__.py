"""Neural-network verification: loaders, specifications, bounds, branch and bound, runtime.

``network`` holds the verifier's own layer list (affine layers with ReLU between them),
``onnx_loader``/``nnet`` build it from files, ``vnnlib``/``spec`` read properties,
``bounds`` computes interval, CROWN and LP lower bounds, ``mip`` is the exact oracle,
``bab`` the branch-and-bound driver and ``runtime`` the per-tick safety monitor. ROS-free.
"""

from __future__ import annotations

from pathlib import Path


class VerificationError(Exception):
    """Base class of every error raised by meetup_ros.verification."""


class VerificationInputError(VerificationError, ValueError):
    """A network file, property file or region is malformed or unsupported."""


def require_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path if it is a file; else an error saying ``what`` is missing or is not a
    file (a folder given by mistake)."""
    path = Path(path)
    if not path.is_file():
        problem = "is not a file" if path.exists() else "does not exist"
        raise VerificationInputError(f"{what} {str(path)!r} {problem}")
    return path
