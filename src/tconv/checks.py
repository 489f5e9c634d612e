"""Small validation helpers shared by the adapters."""

from __future__ import annotations

from typing import Any

import numpy as np


def is_int(value: Any) -> bool:
    """Whether ``value`` is a Python or NumPy integer; ``bool`` (an ``int`` subclass) is not."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
