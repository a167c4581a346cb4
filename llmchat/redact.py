"""Keeping secrets out of logs and reprs: connection URLs without their credentials."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode

MASK = "***"
#: Query parameters that carry a secret (redis-py passes unknown ones on as client options).
_SECRET_PARAM = re.compile(r"(?i)^(password|passwd|pass|pwd|secret|token|api_?key|key|auth)$")


def redact_url(url: str) -> str:
    """``url`` with its user-info and secret query parameters masked.

    ``redis://:pw@host:6379/0`` -> ``redis://***@host:6379/0``; ``redis://host/0?password=pw``
    -> ``redis://host/0?password=***``. Everything up to the *last* ``@`` is user-info, so a
    password with an unescaped ``@`` or ``/`` does not leak either; a URL without credentials
    comes back unchanged.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    if "@" in rest:
        rest = MASK + "@" + rest.rsplit("@", 1)[1]
    head, qmark, query = rest.partition("?")
    if qmark:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, MASK if _SECRET_PARAM.match(k) else v) for k, v in pairs], safe="*/:"
        )
        rest = head + "?" + query
    return f"{scheme}://{rest}" if sep else rest
