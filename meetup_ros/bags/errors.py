"""Errors raised by the bag and EuRoC readers."""

from __future__ import annotations


class BagError(Exception):
    """A bag, a recording folder or a topic in it is missing or malformed.

    The message names the input (file, line, topic), the bad value and what was expected.
    """


class EurocError(BagError):
    """An EuRoC ASL folder (csv, yaml or png) is missing or malformed."""
