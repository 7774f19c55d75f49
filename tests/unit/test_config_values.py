# -*- test-case-name: tests.unit.test_config_values -*-
"""
Tests for L{twisted_rproxy.config.values}: each value must mean what it
means to nginx, and whatever nginx rejects must be rejected with a message
the caller can locate.
"""

from __future__ import annotations

import pytest

from twisted_rproxy.config.values import (
    parseFlag,
    parseInt,
    parseMsec,
    parseSec,
    parseSize,
    parseTime,
)

MAX = 2**63 - 1


# Sizes


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0", 0),
        ("1024", 1024),
        ("007", 7),
        ("16k", 16 * 1024),
        ("16K", 16 * 1024),
        ("1m", 1024**2),
        ("1M", 1024**2),
        ("1g", 1024**3),
        ("1G", 1024**3),
        ("0k", 0),
        (str(MAX), MAX),
        (f"{MAX // 1024**3}g", (MAX // 1024**3) * 1024**3),
    ],
)
def test_sizes(text: str, expected: int) -> None:
    """
    A size is a number of bytes with an optional k, m or g suffix in either
    case, each a power of 1024.
    """
    assert parseSize(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "k",
        "-1",
        "+1",
        " 1",
        "1 ",
        "1.5m",
        "1kb",
        "1t",
        "1_000",
        "١",
        "0x10",
        str(MAX + 1),
        f"{MAX // 1024 + 1}k",
        f"{MAX // 1024**3 + 1}G",
    ],
)
def test_badSizes(text: str) -> None:
    """
    Signs, blanks, fractions, unknown units, non-ASCII digits and sizes that
    overflow nginx's off_t are rejected as nginx's C{invalid value}.
    """
    with pytest.raises(ValueError) as info:
        parseSize(text)
    assert str(info.value) == f'invalid value "{text}"'


# Times


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0", 0.0),
        ("30", 30.0),
        ("500ms", 0.5),
        ("1ms", 0.001),
        ("90s", 90.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1w", 7 * 86400.0),
        ("1M", 30 * 86400.0),
        ("1y", 365 * 86400.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("1h  30m  15s", 5415.0),
        ("1y1M1w1d1h1m1s1ms", 365 * 86400 + 30 * 86400 + 8 * 86400 + 3661.001),
        ("1m 30", 90.0),
        ("1s5", 6.0),
        ("2s 500ms", 2.5),
        ("10s ", 10.0),
        ("10  ", 10.0),
    ],
)
def test_times(text: str, expected: float) -> None:
    """
    A time is one or more number-unit parts from the largest unit down,
    optionally separated by spaces; a final number without a unit counts
    as seconds.
    """
    assert parseTime(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "s",
        "ms",
        "-1",
        "-1s",
        "+1s",
        "1.5s",
        "1x",
        "1sec",
        "1H",
        "1m1h",
        "1s1s",
        "1ms1s",
        "1 2",
        "30 s",
        "1h m",
        " 10s",
        " 10",
        "1\t2s",
        "1s,",
        f"{MAX // 1000 + 1}s",
        f"{MAX}s",
    ],
)
def test_badTimes(text: str) -> None:
    """
    Unknown units, units out of order or repeated, signs, fractions, a unit
    with no number and times overflowing nginx's millisecond range are all
    rejected.
    """
    with pytest.raises(ValueError) as info:
        parseTime(text)
    assert str(info.value) == f'invalid value "{text}"'


def test_largestTime() -> None:
    """
    The largest time nginx can hold, in milliseconds, is accepted.
    """
    assert parseTime(f"{MAX}ms") == MAX / 1000


def test_msec() -> None:
    """
    L{parseMsec} returns whole milliseconds for directives like
    C{proxy_read_timeout}.
    """
    assert parseMsec("60") == 60000
    assert parseMsec("1h 30m") == 5400000
    assert parseMsec("250ms") == 250
    assert parseMsec("1w") == 7 * 86400000


@pytest.mark.parametrize("text", ["1M", "1y", "1y 1d", "x"])
def test_msecRejectsMonthsAndYears(text: str) -> None:
    """
    nginx's millisecond directives reject months and years.
    """
    with pytest.raises(ValueError, match="invalid value"):
        parseMsec(text)


def test_sec() -> None:
    """
    L{parseSec} returns whole seconds for directives like
    C{ssl_session_timeout}, and allows months and years.
    """
    assert parseSec("10m") == 600
    assert parseSec("1y") == 365 * 86400
    assert parseSec("1M 1d") == 31 * 86400
    assert parseSec("45") == 45


@pytest.mark.parametrize("text", ["500ms", "1s 1ms", "x"])
def test_secRejectsMilliseconds(text: str) -> None:
    """
    nginx's second directives reject milliseconds.
    """
    with pytest.raises(ValueError, match="invalid value"):
        parseSec(text)


# Flags


@pytest.mark.parametrize(
    "text, expected",
    [("on", True), ("off", False), ("On", True), ("OFF", False)],
)
def test_flags(text: str, expected: bool) -> None:
    """
    C{on} and C{off} are the only flags, compared ignoring ASCII case as
    nginx does.
    """
    assert parseFlag(text) is expected


@pytest.mark.parametrize("text", ["", "yes", "no", "1", "0", "true", " on", "onn"])
def test_badFlags(text: str) -> None:
    """
    Anything else is rejected with nginx's message.
    """
    with pytest.raises(ValueError) as info:
        parseFlag(text)
    assert str(info.value) == f'invalid value "{text}", it must be "on" or "off"'


def test_badFlagNamesDirective() -> None:
    """
    Given the directive name, the message is word for word nginx's.
    """
    with pytest.raises(ValueError) as info:
        parseFlag("yes", "sendfile")
    assert str(info.value) == (
        'invalid value "yes" in "sendfile" directive, it must be "on" or "off"'
    )


def test_nonASCIIFlag() -> None:
    """
    Non-ASCII look-alikes of C{on} are not flags.
    """
    with pytest.raises(ValueError):
        parseFlag("\uff4f\uff4e")


# Numbers


@pytest.mark.parametrize(
    "text, expected", [("0", 0), ("1", 1), ("0042", 42), (str(MAX), MAX)]
)
def test_ints(text: str, expected: int) -> None:
    """
    A number is plain non-negative decimal.
    """
    assert parseInt(text) == expected


@pytest.mark.parametrize(
    "text", ["", "-1", "+1", " 1", "1 ", "1.0", "1e3", "1k", "1_0", "٣", str(MAX + 1)]
)
def test_badInts(text: str) -> None:
    """
    Signs, blanks, fractions, exponents, units, non-ASCII digits and
    overflow are rejected with nginx's C{invalid number}.
    """
    with pytest.raises(ValueError) as info:
        parseInt(text)
    assert str(info.value) == f'invalid number "{text}"'
