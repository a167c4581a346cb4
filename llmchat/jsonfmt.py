"""The one compact JSON encoding of the project: what is stored, published and sent.

No spaces after separators and UTF-8 left as it is (not ``\\uXXXX``): the shortest text, and
the form Starlette's ``send_json`` writes, so a frame encoded here is byte for byte what the
WebSocket would have sent.
"""

from __future__ import annotations

import json
from typing import Any


def compact_json(value: Any) -> str:
    """``value`` as compact JSON text (separators without spaces, UTF-8 kept)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
