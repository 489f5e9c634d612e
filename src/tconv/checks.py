"""Small validation helpers shared by the adapters."""

from __future__ import annotations

from typing import Any

import numpy as np


def is_int(value: Any) -> bool:
    """Whether ``value`` is a Python or NumPy integer; ``bool`` (an ``int`` subclass) is not."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_frozen(value: Any) -> bool:
    """True for a read-only array that owns its data: nothing can change it in place."""
    return isinstance(value, np.ndarray) and not value.flags.writeable and value.flags.owndata
