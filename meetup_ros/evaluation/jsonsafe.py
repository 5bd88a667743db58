"""Figures as strict JSON: NaN and infinities become null.

json.dumps writes them as bare NaN / Infinity, which strict JSON readers (jq, JavaScript,
most dashboards) refuse; a figure that could not be computed is null instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def finite_json(value: Any) -> Any:
    """``value`` with non-finite floats as None, numpy scalars as Python ones, keys as str."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    if isinstance(value, np.generic):
        return finite_json(value.item())
    return value
