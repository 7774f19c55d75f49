# -*- test-case-name: tests.unit.test_config_values -*-
"""
Parse directive argument values (sizes, times, flags, numbers) with the same
rules as nginx, so a value nginx accepts means the same thing here and a
value it rejects is rejected here too.

Every parser raises L{ValueError} with a message that has no location; the
caller knows the directive and adds the file and line.
"""

from __future__ import annotations

import re
from typing import Dict, Optional, Tuple

__all__ = [
    "parseSize",
    "parseTime",
    "parseMsec",
    "parseSec",
    "parseFlag",
    "parseInt",
]

# nginx's NGX_MAX_OFF_T_VALUE / NGX_MAX_INT_T_VALUE on 64-bit platforms.
_MAX_VALUE = 2**63 - 1

_DIGITS = re.compile(r"[0-9]+")

_SIZE_SCALES: Dict[str, int] = {
    "k": 1024,
    "K": 1024,
    "m": 1024**2,
    "M": 1024**2,
    "g": 1024**3,
    "G": 1024**3,
}

# Time units from largest to smallest: (rank, milliseconds per unit).  nginx
# insists they appear in this order, each at most once.
_TIME_UNITS: Dict[str, Tuple[int, int]] = {
    "y": (1, 365 * 24 * 60 * 60 * 1000),
    "M": (2, 30 * 24 * 60 * 60 * 1000),
    "w": (3, 7 * 24 * 60 * 60 * 1000),
    "d": (4, 24 * 60 * 60 * 1000),
    "h": (5, 60 * 60 * 1000),
    "m": (6, 60 * 1000),
    "s": (7, 1000),
    "ms": (8, 1),
}

# Units nginx only allows for directives kept in seconds.
_LONG_UNITS = frozenset({"M", "y"})

# One "<number><unit>" part of a time, with the spaces after it; no unit
# means seconds, which nginx only allows as the last part.
_TIME_PART = re.compile(r"([0-9]+)(ms|[yMwdhms])? *")


def _invalid(s: str) -> ValueError:
    """
    @return: the error for a value nginx's slot parsers call C{invalid value}.
    """
    return ValueError(f'invalid value "{s}"')


def _digits(s: str) -> bool:
    """
    @return: whether C{s} is one or more ASCII digits and nothing else, which
        is all nginx's C{ngx_atoi} family accepts (no sign, no blanks, no
        underscores or non-ASCII digits that L{int} would take).
    """
    return _DIGITS.fullmatch(s) is not None


def parseSize(s: str) -> int:
    """
    Parse a size such as C{1024}, C{16k}, C{1m} or C{1G}, as nginx's
    C{ngx_parse_offset} does: a decimal number of bytes with an optional
    case-insensitive C{k}, C{m} or C{g} (powers of 1024) suffix.

    @param s: the argument.
    @return: the size in bytes.
    @raise ValueError: on anything else, or a size beyond 2**63 - 1 bytes.
    """
    number, scale = s, 1
    if s and s[-1] in _SIZE_SCALES:
        number, scale = s[:-1], _SIZE_SCALES[s[-1]]
    if not _digits(number) or int(number) > _MAX_VALUE // scale:
        raise _invalid(s)
    return int(number) * scale


def _parseMilliseconds(s: str, allowMsec: bool, allowLong: bool) -> int:
    """
    Parse a time the way nginx's C{ngx_parse_time} does: parts like
    C{1h30m} or C{1h 30m} in decreasing unit order, each unit once, with a
    final unitless number counting as seconds.  Trailing spaces are allowed,
    leading ones are not.  A few oddities nginx lets through by accident are
    refused: a unit with no number (C{1h m}), two unitless numbers (C{1 2})
    and a leading space before a unitless number (C{" 10"}).

    @param allowMsec: whether C{ms} is allowed (nginx's msec directives).
    @param allowLong: whether C{M} and C{y} are allowed (nginx's seconds
        directives).
    @return: the time in milliseconds.
    @raise ValueError: for anything else, or a total beyond 2**63 - 1 ms.
    """
    text = s.rstrip(" ")
    if not text:
        raise _invalid(s)
    total = 0
    lastRank = 0
    pos = 0
    while pos < len(text):
        match = _TIME_PART.match(text, pos)
        if match is None:
            raise _invalid(s)
        pos = match.end()
        number, unit = match.group(1), match.group(2)
        if unit is None:
            if pos < len(text):
                raise _invalid(s)
            unit = "s"
        else:
            rank = _TIME_UNITS[unit][0]
            if rank <= lastRank:
                raise _invalid(s)
            lastRank = rank
        if (unit == "ms" and not allowMsec) or (unit in _LONG_UNITS and not allowLong):
            raise _invalid(s)
        total += int(number) * _TIME_UNITS[unit][1]
        if total > _MAX_VALUE:
            raise _invalid(s)
    return total


def parseTime(s: str) -> float:
    """
    Parse a time such as C{30}, C{500ms}, C{90s}, C{1h30m} or C{1h 30m}.

    Every unit nginx knows is accepted: C{ms s m h d w M y} (a month is 30
    days, a year 365).  Use L{parseMsec} or L{parseSec} to also apply the
    per-directive restrictions nginx has.

    @param s: the argument.
    @return: the time in seconds.
    @raise ValueError: if C{s} is not a valid time.
    """
    return _parseMilliseconds(s, allowMsec=True, allowLong=True) / 1000


def parseMsec(s: str) -> int:
    """
    Parse a time for a directive nginx stores in milliseconds (those using
    C{ngx_conf_set_msec_slot}, e.g. C{proxy_read_timeout}), which rejects
    the C{M} and C{y} units.

    @param s: the argument.
    @return: the time in milliseconds.
    @raise ValueError: if C{s} is not a valid time for such a directive.
    """
    return _parseMilliseconds(s, allowMsec=True, allowLong=False)


def parseSec(s: str) -> int:
    """
    Parse a time for a directive nginx stores in seconds (those using
    C{ngx_conf_set_sec_slot}, e.g. C{ssl_session_timeout}), which rejects
    the C{ms} unit.

    @param s: the argument.
    @return: the time in whole seconds.
    @raise ValueError: if C{s} is not a valid time for such a directive.
    """
    return _parseMilliseconds(s, allowMsec=False, allowLong=True) // 1000


def parseFlag(s: str, directive: Optional[str] = None) -> bool:
    """
    Parse an C{on}/C{off} flag.  Like nginx, the comparison ignores ASCII
    case, so C{On} and C{OFF} are accepted too.

    @param s: the argument.
    @param directive: the directive's name, to word the error as nginx does.
    @return: C{True} for C{on}, C{False} for C{off}.
    @raise ValueError: C{invalid value "x" in "name" directive, it must be
        "on" or "off"} (without the C{in "name" directive} part when no
        directive is given).
    """
    if s.isascii():
        if s.lower() == "on":
            return True
        if s.lower() == "off":
            return False
    where = "" if directive is None else f' in "{directive}" directive'
    raise ValueError(f'invalid value "{s}"{where}, it must be "on" or "off"')


def parseInt(s: str) -> int:
    """
    Parse a non-negative decimal number, as nginx's C{ngx_atoi} does.

    @param s: the argument.
    @return: its value.
    @raise ValueError: C{invalid number "x"} for signs, blanks, non-digits
        or values beyond 2**63 - 1.
    """
    if not _digits(s) or int(s) > _MAX_VALUE:
        raise ValueError(f'invalid number "{s}"')
    return int(s)
