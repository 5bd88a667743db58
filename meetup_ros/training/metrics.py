"""Per-epoch metrics as a CSV file (one row per epoch), appended to on resume."""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Mapping
from pathlib import Path

from meetup_ros.training.checkpoint import atomic_write_bytes

logger = logging.getLogger(__name__)


class MetricsError(ValueError):
    """A metrics.csv to append to cannot be read (the message names the file)."""


class MetricsWriter:
    """Write ``metrics.csv``: columns ``epoch`` then the metric names in first-seen order.

    Args:
        path: the CSV file.
        resume_epoch: when resuming, rows with ``epoch <= resume_epoch`` are kept and later
            ones (written after the checkpoint being resumed) dropped; ``None`` starts afresh.

    A row with a new metric name rewrites the file with the wider header (files are small).
    Every write is atomic.
    """

    def __init__(self, path: Path, resume_epoch: int | None = None) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, float]] = []
        self.columns: list[str] = ["epoch"]
        if resume_epoch is not None and self.path.is_file():
            try:
                with self.path.open(newline="", encoding="utf-8") as handle:
                    for row in csv.DictReader(handle):
                        parsed = {k: _parse(v) for k, v in row.items() if k is not None}
                        if parsed.get("epoch", math.inf) <= resume_epoch:
                            self._add(parsed)
            except (UnicodeDecodeError, csv.Error, ValueError, TypeError) as exc:
                # "'utf-8' codec can't decode byte 0xff" named no file
                raise MetricsError(f"metrics file {str(self.path)!r} cannot be read as the "
                                   f"CSV of numbers this run appends to ({exc}); move it away "
                                   "to start it afresh") from exc
            logger.info("metrics: appending to %s after epoch %d (%d rows kept)",
                        self.path, resume_epoch, len(self.rows))
        self._flush()

    def _add(self, row: Mapping[str, float]) -> None:
        for key in row:
            if key not in self.columns:
                self.columns.append(key)
        self.rows.append(dict(row))

    def write(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Append the row for ``epoch``."""
        self._add({"epoch": epoch, **{k: float(v) for k, v in metrics.items()}})
        self._flush()

    def _flush(self) -> None:
        lines = [",".join(self.columns)]
        for row in self.rows:
            lines.append(",".join(_format(row.get(c)) for c in self.columns))
        atomic_write_bytes(self.path, ("\n".join(lines) + "\n").encode())


def _format(value: float | None) -> str:
    if value is None:
        return ""
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _parse(text: str | None) -> float:
    if text is None or text == "":
        return math.nan
    return float(text)


def read_metrics(path: Path) -> list[dict[str, float]]:
    """Read a ``metrics.csv`` back as a list of rows."""
    with Path(path).open(newline="") as handle:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(handle)]
