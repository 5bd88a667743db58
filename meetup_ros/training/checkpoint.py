"""Weights and checkpoints: written atomically, read without unpickling arbitrary objects.

Files are ordinary ``torch.save`` archives, read back with ``weights_only=True``, which only
rebuilds tensors and plain containers (dict, list, str, int, float, bool, None): a hostile
file cannot run code. A write goes to a temporary file in the same folder, is flushed to
disk and renamed over the target, so a crash never leaves a half-written checkpoint.

torch.load does not check the zip archive's CRCs, so bytes flipped inside a tensor loaded
silently: every read checks them first, and :func:`save_weights` also records a SHA-256
digest of each tensor, which :func:`load_weights` checks (files written before it have none
and still load, CRC-checked).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import tempfile
import time
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

# The metadata key of the per-tensor digests; load_weights checks and removes it, so callers
# get back the metadata they saved.
DIGEST_KEY = "tensor_sha256"
METADATA_DIGEST_KEY = "metadata_sha256"
logger = logging.getLogger(__name__)


class CheckpointError(Exception):
    """A weights or checkpoint file is missing, unreadable or not what was expected."""


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so that readers see the old file or the new, never half.

    The temporary file is ``.NAME.PID.XXXXXXXX.tmp`` (this process's id). Once the new file
    is in place, temporary files of earlier writes of the same ``path`` whose writer is gone
    (see :func:`stale_temp_files`) are removed: a process killed while writing (SIGKILL,
    power loss) leaves its own behind, and nothing else would. Another live process's are
    kept: removing them all made a concurrent writer of the same path fail at its rename
    (FileNotFoundError, 18 of 200 writes in a tester's race).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                                    dir=path.parent)
    try:
        # mkstemp creates 0600; weights and checkpoints are ordinary readable files.
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    for stale in stale_temp_files(path):
        try:
            stale.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:  # the write itself succeeded: say so, do not fail it
            logger.warning("could not remove %s, left by an interrupted write: %s", stale, exc)
            continue
        logger.info("removed %s, left by an interrupted write of %s", stale.name, path.name)


# A temporary file untouched this long is stale whoever wrote it: a write takes seconds, and
# a process id can be reused (or belong to another machine sharing the folder)
STALE_TEMP_AGE_S = 3600.0


def stale_temp_files(path: Path) -> list[Path]:
    """Temporary files :func:`atomic_write_bytes` made for ``path`` and never renamed, whose
    writer is gone: in ``path``'s folder, named ``.`` + ``path``'s name + ``.`` + the writer's
    process id + ``.`` + mkstemp's 8 characters (``[a-z0-9_]``) + ``.tmp``, where no process
    of that id runs (or the file is older than :data:`STALE_TEMP_AGE_S`); or named without
    the id, as versions before it wrote them. Nothing else matches (other files'
    temporaries included)."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:(\d+)\.)?[a-z0-9_]{{8}}\.tmp")
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return []
    stale = []
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or not entry.is_file() or entry.is_symlink():
            continue
        if match.group(1) is not None and _process_alive(int(match.group(1))):
            try:
                young = time.time() - entry.stat().st_mtime < STALE_TEMP_AGE_S
            except OSError:
                continue  # gone meanwhile: its writer renamed it
            if young:
                continue  # a live writer's (this process's other threads' included)
        stale.append(entry)
    return sorted(stale)


def _process_alive(pid: int) -> bool:
    """Whether a process with this id runs here (signal 0 checks without sending one)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    except OverflowError:
        return False  # not a process id
    return True


def save(path: Path, payload: Mapping[str, Any]) -> None:
    """Atomically save a dict of tensors and plain values (state dicts, metadata, counters)."""
    buffer = io.BytesIO()
    torch.save(dict(payload), buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


def load(path: Path, *, map_location: str | torch.device = "cpu",
         what: str = "weights file") -> dict[str, Any]:
    """Load a file written by :func:`save`; never unpickles arbitrary objects. ``what`` names
    the file in errors (a training checkpoint was called a "weights file": a tester's).

    Raises:
        CheckpointError: the file is missing, truncated, not a torch archive, or holds
            something other than tensors and plain containers.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {str(path)!r} does not exist")
    if not zipfile.is_zipfile(path):
        # torch.save writes a zip archive; torch's own message for anything else is advice
        # to load without weights_only, which is exactly what must not be done here.
        raise CheckpointError(
            f"{what} {str(path)!r} is not a readable weights-only torch archive: not the "
            "zip archive torch.save writes (truncated, corrupt or another format)"
        )
    _check_crcs(path, what)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe archives
        text = str(exc).strip()
        if "Weights only load failed" in text:
            reason = ("it holds objects other than tensors and plain containers, which are "
                      "never unpickled")
        else:
            reason = text.splitlines()[0] if text else type(exc).__name__
        raise CheckpointError(
            f"{what} {str(path)!r} is not a readable weights-only torch archive: {reason}"
        ) from exc
    if not isinstance(payload, dict):
        raise CheckpointError(
            f"{what} {str(path)!r} holds a {type(payload).__name__}, expected a dict"
        )
    return payload


def _check_crcs(path: Path, what: str = "weights file") -> None:
    """Refuse an archive whose members fail their zip CRC (torch.load never checks them)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, UnicodeDecodeError,
            ValueError, OSError) as exc:
        # what testzip raises on a damaged member header or stream, a truncated member, or a
        # member name no longer UTF-8 (one flipped bit: a tester's UnicodeDecodeError)
        raise CheckpointError(f"{what} {str(path)!r} is corrupt: {exc}") from exc
    if bad is not None:
        raise CheckpointError(
            f"{what} {str(path)!r} is corrupt: archive member {bad!r} fails its CRC check")


def tensor_digest(tensor: torch.Tensor) -> str:
    """SHA-256 (hex) of a tensor's dtype, shape and bytes, as saved (on the CPU, contiguous)."""
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    digest = hashlib.sha256(f"{flat.dtype}{tuple(tensor.shape)}".encode())
    digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_weights(path: Path, state_dict: Mapping[str, torch.Tensor], **metadata: Any) -> None:
    """Save the weights a node loads: ``{"state_dict": ..., "metadata": {...}}``.

    ``metadata`` holds what is needed to rebuild the module (sizes, normalisation constants,
    the training command and data) as plain values. Each tensor's digest is added under
    ``DIGEST_KEY`` (replacing any passed in, e.g. metadata read from other weights).
    """
    tensors = {k: v.detach().cpu() for k, v in state_dict.items()}
    plain = {k: v for k, v in metadata.items() if k not in (DIGEST_KEY, METADATA_DIGEST_KEY)}
    digests = {k: tensor_digest(v) for k, v in tensors.items()}
    save(path, {"state_dict": tensors, "metadata": {
        **plain, DIGEST_KEY: digests, METADATA_DIGEST_KEY: metadata_digest(plain)}})


def metadata_digest(metadata: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the metadata as canonical JSON: the metadata rebuilds the module
    (a depth network's average depth, say), so a changed value is as wrong as a changed
    tensor."""
    text = json.dumps(metadata, sort_keys=True, default=repr, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _check_digests(path: Path, state_dict: dict[str, Any], metadata: dict[str, Any]) -> None:
    """Compare the tensors and the metadata with the digests saved beside them.

    The digests are against damage (the zip CRCs miss a member whose CRC was rewritten, and
    a re-saved archive), not against someone who rewrites a file and its digests. Weights
    written before the digests existed have none: they load, CRC-checked, with a warning.
    """
    if DIGEST_KEY not in metadata and METADATA_DIGEST_KEY not in metadata:
        logger.warning("weights file %s carries no SHA-256 digests (written before they "
                       "existed); only its zip CRCs were checked", path)
        return
    digests = metadata.pop(DIGEST_KEY, None)
    meta_digest = metadata.pop(METADATA_DIGEST_KEY, None)
    if meta_digest != metadata_digest(metadata):
        raise CheckpointError(
            f"weights file {str(path)!r} is corrupt: its metadata does not match its "
            f"{METADATA_DIGEST_KEY!r} (missing, or a value changed)")
    if not isinstance(digests, dict) or set(digests) != set(state_dict):
        raise CheckpointError(
            f"weights file {str(path)!r} is corrupt: its {DIGEST_KEY!r} entry does not list "
            "exactly the tensors of its state_dict")
    for name, value in state_dict.items():
        if not isinstance(value, torch.Tensor) or tensor_digest(value) != digests[name]:
            raise CheckpointError(
                f"weights file {str(path)!r} is corrupt: tensor {name!r} does not match its "
                "SHA-256 digest")


def load_weights(
    path: Path, *, kind: str | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return ``(state_dict, metadata)`` from a file written by :func:`save_weights`.

    With ``kind``, the metadata's ``kind`` must equal it (a depth network's file handed to
    the learned optimiser is refused here, not by a shape mismatch later).
    """
    payload = load(path)
    state_dict = payload.get("state_dict")
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"weights file {str(path)!r} has no 'state_dict' entry")
    metadata = payload.get("metadata", {})
    if not isinstance(metadata, dict):
        raise CheckpointError(f"weights file {str(path)!r} has a malformed 'metadata' entry")
    _check_digests(path, state_dict, metadata)
    if kind is not None and metadata.get("kind") != kind:
        # the odometry weights name their network under "model", not "kind"
        found = metadata.get("kind") or metadata.get("model") or "no kind"
        raise CheckpointError(
            f"weights file {str(path)!r} holds {found!r} weights, expected {kind!r}"
        )
    for name, value in state_dict.items():
        # NaN weights loaded silently and made a learned step that never converged
        if (isinstance(value, torch.Tensor) and value.is_floating_point()
                and not bool(torch.isfinite(value).all())):
            raise CheckpointError(
                f"weights file {str(path)!r}: {name!r} holds non-finite values (NaN or inf)")
    return state_dict, metadata
