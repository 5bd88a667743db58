"""Where the package's shipped files live, installed (colcon/ament) or from a source tree."""

from __future__ import annotations

from pathlib import Path

PACKAGE = "meetup_ros"
SOURCE_ROOT = Path(__file__).resolve().parent.parent


def share_dir() -> Path:
    """The package's share directory: ament's install space if there is one, else the repo."""
    try:
        from ament_index_python.packages import (
            PackageNotFoundError,
            get_package_share_directory,
        )
    except ImportError:
        return SOURCE_ROOT
    try:
        installed = Path(get_package_share_directory(PACKAGE))
    except (PackageNotFoundError, ValueError, LookupError, OSError):
        return SOURCE_ROOT
    # An editable pip install registers no share dir with ament; prefer the source tree then.
    return installed if (installed / "config").is_dir() else SOURCE_ROOT


def resolve(path: str | Path, kind: str, *, cwd: bool = True) -> Path:
    """Resolve a file name given in a parameter or on the command line.

    An absolute path is used as is; so, with ``cwd`` (a command line), is one that exists
    relative to the working directory; otherwise it is looked up under ``<share>/<kind>/``
    (kind is ``models``, ``config``, ``data`` or ``launch``). The path is returned even if
    missing, so that the caller's error can name it.
    """
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or (cwd and candidate.exists()):
        return candidate
    if candidate.parts and candidate.parts[0] == kind:  # "config/x.yaml" typed from elsewhere
        return share_dir() / candidate
    return share_dir() / kind / candidate


def node_file(path: str | Path, kind: str) -> Path:
    """A file a node parameter names, absolute: as given if absolute, else under the package's
    share (``<share>/<kind>/``), never the working directory. A node inherits the directory
    its launcher ran in: a tester's `ros2 launch` from a folder holding another
    governor.onnx loaded that one, the log naming only 'governor.onnx'."""
    return resolve(path, kind, cwd=False).absolute()


def model_path(name: str | Path) -> Path:
    return resolve(name, "models")


def config_path(name: str | Path) -> Path:
    return resolve(name, "config")


def data_path(name: str | Path) -> Path:
    return resolve(name, "data")


SHARED_DATA = "../shared/data"  # the project's data sets, beside the repository


def shared_data_path(path: str | Path) -> Path:
    """A ``--data-root``-style folder: as given if it exists (or is absolute); a relative one
    that does not exist from the working directory is looked up from the source tree, so that
    the default ``../shared/data`` works from any directory (a tester's run from elsewhere
    got "'../shared/data' is not a folder")."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return candidate
    beside = SOURCE_ROOT / candidate
    return beside if beside.exists() else candidate
