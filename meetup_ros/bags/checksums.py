"""SHA256SUMS next to the data files of the bags this package writes, checked on every read.

``rosbags`` writes MCAP chunks without their CRC (the field is 0, which readers take as "not
computed"), and a zstd frame without a checksum can decompress damaged bytes into garbage of
the right size: 200 bytes flipped inside a chunk of the bundled bag read back without any
error, as corrupted images. The importer and the recorder therefore write ``SHA256SUMS``
(``sha256sum`` format, so ``sha256sum -c SHA256SUMS`` in the folder checks it too), and the
reader verifies it when present, on every open (a bag named by its data file: that file's
entry): 14-25 ms for the 13 MB bundled bag, so 1-2 s per GB for a long recording of this
package's recorder (a known cost; delete the file to skip the check). Bags from elsewhere
have no such file; rosbags checks their chunk CRCs where their writer filled them in.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from meetup_ros.bags.errors import BagError

SUMS_NAME = "SHA256SUMS"
_DATA_SUFFIXES = (".mcap", ".db3")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(bag_dir: Path) -> Path:
    """Write ``bag_dir/SHA256SUMS`` for the bag's data files; returns its path."""
    files = sorted(p for p in bag_dir.iterdir() if p.is_file() and p.suffix in _DATA_SUFFIXES)
    sums = bag_dir / SUMS_NAME
    tmp = sums.with_suffix(".tmp")
    tmp.write_text("".join(f"{_sha256(p)}  {p.name}\n" for p in files))
    tmp.replace(sums)
    return sums


def _listed(bag_dir: Path) -> dict[str, str]:
    """``bag_dir/SHA256SUMS`` as {file name: sha256} (empty when there is none).

    Raises:
        BagError: a line is not ``<sha256>  <file name>``.
    """
    sums = bag_dir / SUMS_NAME
    if not sums.is_file():
        return {}
    listed: dict[str, str] = {}
    for n, line in enumerate(sums.read_text(errors="replace").splitlines(), start=1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name or "/" in name:
            raise BagError(f"bag {str(bag_dir)!r}: {SUMS_NAME} line {n} {line!r} is not "
                           "'<sha256>  <file name>'")
        listed[name] = digest.lower()
    return listed


def verify_checksums(bag_dir: Path) -> bool:
    """Check ``bag_dir/SHA256SUMS`` if there is one (False when there is none).

    Raises:
        BagError: the file is malformed, names a missing file, or a file does not match.
    """
    if not (bag_dir / SUMS_NAME).is_file():
        return False
    listed = _listed(bag_dir)
    for name, digest in listed.items():
        path = bag_dir / name
        if not path.is_file():
            raise BagError(f"bag {str(bag_dir)!r}: {name!r} listed in {SUMS_NAME} is missing")
        if _sha256(path) != digest:
            raise BagError(
                f"bag {str(bag_dir)!r}: {name!r} does not match its {SUMS_NAME} entry: the file "
                "is corrupt or was changed after it was written")
    # Every data file, or an emptied list would pass a damaged bag (a tester's finding).
    unlisted = sorted(p.name for p in bag_dir.iterdir()
                      if p.is_file() and p.suffix in _DATA_SUFFIXES and p.name not in listed)
    if unlisted:
        raise BagError(f"bag {str(bag_dir)!r}: {unlisted!r} not listed in its {SUMS_NAME}; "
                       f"delete {SUMS_NAME} to read the bag unchecked")
    return True


def verify_data_file(path: Path) -> bool:
    """Check a bag given as its data file (``.mcap``/``.db3``) against its folder's
    ``SHA256SUMS`` entry, if the folder has one (False when it has none, or for another file).

    Only the folder was checked: the same damaged file named by its path read back silently
    (a tester's finding). The folder's other files are not this read's input, so only this
    file's entry is checked; a file the folder's list leaves out is refused as in the folder.

    Raises:
        BagError: the list is malformed, does not list the file, or the file does not match.
    """
    bag_dir = path.parent
    if path.suffix not in _DATA_SUFFIXES or not (bag_dir / SUMS_NAME).is_file():
        return False
    digest = _listed(bag_dir).get(path.name)
    if digest is None:
        raise BagError(f"bag {str(path)!r}: not listed in {str(bag_dir / SUMS_NAME)!r}; "
                       f"delete {SUMS_NAME} to read the bag unchecked")
    if _sha256(path) != digest:
        raise BagError(f"bag {str(path)!r} does not match its entry in "
                       f"{str(bag_dir / SUMS_NAME)!r}: the file is corrupt or was changed "
                       "after it was written")
    return True
