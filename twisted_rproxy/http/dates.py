# -*- test-case-name: tests.unit.test_channel -*-
"""
The HTTP C{Date} header value, formatted once per second rather than per
response.
"""

from __future__ import annotations

from email.utils import formatdate

_cache = [-1, b""]


def httpDate(now: float) -> bytes:
    """
    @return: the IMF-fixdate for C{now}, e.g. C{Sun, 06 Nov 1994 08:49:37 GMT}.
    """
    second = int(now)
    if _cache[0] != second:
        _cache[0] = second
        _cache[1] = formatdate(second, usegmt=True).encode("ascii")
    return _cache[1]  # type: ignore[return-value]
