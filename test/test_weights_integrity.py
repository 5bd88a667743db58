"""Weights and checkpoints with damaged bytes are refused, naming the file (a tester's
models/vio.pt with 64 bytes flipped inside a tensor loaded silently: torch.load does not
check the zip CRCs); weights written before the tensor digests still load."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import pytest
import torch

from meetup_ros.training import checkpoint
from meetup_ros.training.checkpoint import CheckpointError, load_weights, save_weights

REPO = Path(__file__).resolve().parent.parent
SHIPPED = ("vio.pt", "depth_code.pt", "slam_optimizer.pt", "slam_optimizer_pyramid.pt")


def _state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return torch.nn.Linear(64, 32).state_dict()


def _legacy(path: Path, state: dict[str, torch.Tensor], **metadata: object) -> Path:
    """What save_weights wrote before the digests: the same layout, no digest."""
    checkpoint.save(path, {"state_dict": state, "metadata": dict(metadata)})
    return path


def flip_inside_largest_member(path: Path, count: int = 64) -> str:
    """Flip ``count`` bytes in the middle of the archive's largest member (a tensor's bytes,
    stored uncompressed by torch.save); returns the member's name."""
    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    # local file header: 30 bytes, then the name and the extra field (lengths at 26 and 28)
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2 - count // 2
    data[start: start + count] = bytes(b ^ 0xFF for b in data[start: start + count])
    path.write_bytes(bytes(data))
    return info.filename


def test_flipped_bytes_in_a_tensor_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    save_weights(path, _state(), kind="test")
    member = flip_inside_largest_member(path)
    with pytest.raises(CheckpointError, match=rf"weights file '.*weights.pt' is corrupt: "
                                              rf"archive member '{member}' fails its CRC"):
        load_weights(path)


def test_flipped_bytes_in_old_weights_and_checkpoints_are_refused(tmp_path: Path) -> None:
    """Files without digests (older weights, training checkpoints) get the CRC check."""
    for path in (_legacy(tmp_path / "old.pt", _state(), kind="test"), tmp_path / "ckpt.pt"):
        if path.name == "ckpt.pt":
            checkpoint.save(path, {"model": _state(), "epoch": 3})
        flip_inside_largest_member(path)
        with pytest.raises(CheckpointError, match=rf"'.*{path.name}' is corrupt"):
            checkpoint.load(path)


def test_a_tensor_that_does_not_match_its_digest_is_refused(tmp_path: Path) -> None:
    """A changed tensor in a re-written archive (valid CRCs) still fails its digest."""
    path = tmp_path / "weights.pt"
    save_weights(path, _state(), kind="test")
    payload = checkpoint.load(path)
    payload["state_dict"]["weight"][3, 5] += 1.0
    checkpoint.save(path, payload)
    with pytest.raises(CheckpointError, match=r"'.*weights.pt' is corrupt: tensor 'weight' "
                                              r"does not match its SHA-256 digest"):
        load_weights(path)
    payload["metadata"][checkpoint.DIGEST_KEY].pop("bias")
    checkpoint.save(path, payload)
    with pytest.raises(CheckpointError, match=r"is corrupt: its 'tensor_sha256' entry does "
                                              r"not list exactly the tensors"):
        load_weights(path)


def test_weights_round_trip_with_and_without_digests(tmp_path: Path) -> None:
    """The caller gets back the metadata it saved; weights written before the digests load."""
    state = _state()
    save_weights(tmp_path / "new.pt", state, kind="test", config={"n": 1})
    assert checkpoint.DIGEST_KEY in checkpoint.load(tmp_path / "new.pt")["metadata"]
    _legacy(tmp_path / "old.pt", state, kind="test", config={"n": 1})
    for name in ("new.pt", "old.pt"):
        loaded, metadata = load_weights(tmp_path / name, kind="test")
        assert metadata == {"kind": "test", "config": {"n": 1}}
        assert all(torch.equal(loaded[k], state[k]) for k in state)
    # metadata read from other weights, digests included, is saved with fresh digests
    save_weights(tmp_path / "again.pt", {k: v * 2 for k, v in state.items()},
                 **checkpoint.load(tmp_path / "new.pt")["metadata"])
    assert load_weights(tmp_path / "again.pt")[1] == {"kind": "test", "config": {"n": 1}}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_carry_digests(name: str) -> None:
    path = REPO / "models" / name
    metadata = checkpoint.load(path)["metadata"]
    digests = metadata.get(checkpoint.DIGEST_KEY)
    assert isinstance(digests, dict) and digests, f"{name} has no tensor digests"
    assert isinstance(metadata.get(checkpoint.METADATA_DIGEST_KEY), str), name
    load_weights(path)


def test_changed_metadata_a_null_digest_and_a_damaged_member_name_are_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """A sixth tester's: models/depth_code.pt re-saved with average_depth_m 4.0 instead of 2.0
    loaded silently (the digests covered tensors only: depth AbsRel went from 0.085 to 0.21);
    a digest entry set to None took the old-file path; one flipped bit in a member's name was
    a UnicodeDecodeError naming no file. Only a file with no digests at all is taken for an
    old one, with a warning."""
    path = tmp_path / "weights.pt"
    save_weights(path, _state(), kind="test", config={"average_depth_m": 2.0})
    payload = checkpoint.load(path)
    payload["metadata"]["config"]["average_depth_m"] = 4.0
    checkpoint.save(path, payload)
    with pytest.raises(CheckpointError, match=r"'.*weights.pt' is corrupt: its metadata does "
                                              r"not match its 'metadata_sha256'"):
        load_weights(path)
    payload["metadata"]["config"]["average_depth_m"] = 2.0
    payload["metadata"][checkpoint.DIGEST_KEY] = None
    checkpoint.save(path, payload)
    with pytest.raises(CheckpointError, match="is corrupt: its 'tensor_sha256' entry"):
        load_weights(path)
    save_weights(path, _state(), kind="test")
    with zipfile.ZipFile(path) as archive:
        name = archive.infolist()[-1].filename.encode()
    data = bytearray(path.read_bytes())
    at = data.rindex(name)  # the central directory's copy of the last member's name
    data[at + 1] ^= 0x80
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"'.*weights.pt' is corrupt"):
        load_weights(path)
    _legacy(tmp_path / "old.pt", _state(), kind="test")
    with caplog.at_level("WARNING"):
        load_weights(tmp_path / "old.pt")
    assert "carries no SHA-256 digests" in caplog.text
