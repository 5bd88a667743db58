"""Image message fields -> numpy, without importing ROS.

The nodes (``ros/convert.py``, on rclpy messages) and the offline bag reader
(``bags/reader.py``, on rosbags messages) both read images here, so that a camera the nodes
take is read the same way by training and evaluation: the reader once took mono8 only, and
refused the rgb8 bags the nodes ran on. A message is anything with the ``sensor_msgs/Image``
fields (``encoding``, ``height``, ``width``, ``step``, ``data``, ``is_bigendian``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# Encodings read here, with (channels, numpy dtype).
ENCODINGS: dict[str, tuple[int, type]] = {
    "mono8": (1, np.uint8),
    "8UC1": (1, np.uint8),
    "rgb8": (3, np.uint8),
    "bgr8": (3, np.uint8),
    "32FC1": (1, np.float32),
}
# The 8-bit encodings that read as a grey image.
MONO8_SOURCES = ("mono8", "8UC1", "rgb8", "bgr8")


class ImageError(ValueError):
    """An image message's fields do not describe a readable image; names the input."""


def image_array(
    msg: Any,
    *,
    topic: str = "image",
    encodings: Sequence[str] = tuple(ENCODINGS),
    expected_hw: tuple[int, int] | None = None,
) -> np.ndarray:
    """The message's data as ``(H, W)`` or ``(H, W, 3)`` in its own dtype (a copy).

    Raises:
        ImageError: unknown or unaccepted encoding, size mismatch, wrong step or data length,
            big-endian float data.
    """
    encoding = msg.encoding
    if encoding not in encodings or encoding not in ENCODINGS:
        raise ImageError(
            f"{topic}: encoding {encoding!r} is not supported here; expected one of "
            f"{sorted(set(encodings) & set(ENCODINGS))}"
        )
    channels, dtype = ENCODINGS[encoding]
    height, width = int(msg.height), int(msg.width)
    if height <= 0 or width <= 0:
        raise ImageError(f"{topic}: image size {(height, width)!r} is empty")
    if expected_hw is not None and (height, width) != tuple(expected_hw):
        raise ImageError(
            f"{topic}: image size (height, width) {(height, width)!r}, "
            f"expected {tuple(expected_hw)!r}"
        )
    itemsize = np.dtype(dtype).itemsize
    row_bytes = width * channels * itemsize
    step = int(msg.step)
    if step < row_bytes:
        raise ImageError(f"{topic}: step {step!r} < width*channels*itemsize {row_bytes!r}")
    data = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    if data.size != step * height:
        raise ImageError(
            f"{topic}: data holds {data.size!r} bytes, expected step*height = {step * height!r}"
        )
    if itemsize > 1 and msg.is_bigendian:
        raise ImageError(f"{topic}: is_bigendian={msg.is_bigendian!r} float data, expected 0")
    rows = data.reshape(height, step)[:, :row_bytes]
    array: np.ndarray = np.ascontiguousarray(rows).view(dtype)
    return array.reshape((height, width, channels) if channels > 1 else (height, width)).copy()


def image_mono8(
    msg: Any, *, topic: str = "image", expected_hw: tuple[int, int] | None = None
) -> np.ndarray:
    """An 8-bit image message (mono8, 8UC1, rgb8 or bgr8) as a ``(H, W)`` uint8 grey image.

    Raises:
        ImageError: as :func:`image_array`, or another encoding.
    """
    array = image_array(msg, topic=topic, encodings=MONO8_SOURCES, expected_hw=expected_hw)
    if array.ndim == 2:
        return array
    rgb = array.astype(np.float32)
    if msg.encoding == "bgr8":
        rgb = rgb[..., ::-1]
    # ITU-R BT.601 luma, the weights OpenCV's RGB2GRAY uses.
    grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)
