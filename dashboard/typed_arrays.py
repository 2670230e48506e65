"""Plotly's base64 encoding of typed arrays, for arrays a figure carries in
``meta``: plotly encodes data attributes itself, but ``meta`` would travel
as a JSON list of numbers (about three times the bytes)."""

from __future__ import annotations

import numpy as np


def typed_array(values: np.ndarray, dtype: str = "f4") -> dict:
    """``{"dtype", "bdata"}`` of ``values`` as little-endian ``dtype``
    (``"f4"``: float32; ``"i2"``, ``"i4"``: int16, int32, for codes), as plotly.js and
    ``plotly_map``'s page decode it."""
    import base64

    data = np.ascontiguousarray(values, dtype=f"<{dtype}")
    return {"dtype": dtype, "bdata": base64.b64encode(data).decode()}
