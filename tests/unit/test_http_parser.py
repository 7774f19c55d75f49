# -*- test-case-name: tests.unit.test_http_parser -*-
"""
Tests for L{twisted_rproxy.http.parser}: every form RFC 9112 (and nginx)
accepts must parse, and everything that could let two parsers frame a
message differently must be refused with the right status and a reason
an operator can act on.
"""

from __future__ import annotations

import random
import re
import sys
from typing import Callable, List, Sequence, Tuple

import pytest

from twisted_rproxy.http import parser
from twisted_rproxy.http.parser import (
    ChunkedDecoder,
    Framing,
    HTTPError,
    Limits,
    RequestHead,
    ResponseHead,
    checkIncompleteHead,
    fieldValues,
    findHeadEnd,
    headerLowers,
    headerValue,
    parseRequestHead,
    parseResponseHead,
    requestFraming,
    responseFraming,
)

LIMITS = Limits()
MAX = 2**63 - 1


def request(*lines: bytes, start: bytes = b"GET / HTTP/1.1") -> bytes:
    """
    Build a request head from its start line and header lines, CRLF-ended.
    """
    return b"\r\n".join((start,) + lines) + b"\r\n\r\n"


def response(*lines: bytes, start: bytes = b"HTTP/1.1 200 OK") -> bytes:
    """
    Build a response head the same way as L{request}.
    """
    return b"\r\n".join((start,) + lines) + b"\r\n\r\n"


def expectError(call: Callable[[], object], status: int, fragment: str) -> HTTPError:
    """
    Run C{call}, insisting it refuses with C{status} and a reason that
    mentions C{fragment}, so a refusal for the wrong cause still fails.
    """
    with pytest.raises(HTTPError) as info:
        call()
    error = info.value
    assert error.status == status, error.reason
    assert fragment.lower() in error.reason.lower(), error.reason
    return error


def parseAndFrame(head: bytes, limits: Limits = LIMITS) -> Tuple[RequestHead, Framing]:
    """
    Parse a request head and frame its body, as the server will.
    """
    parsed = parseRequestHead(head, limits)
    return parsed, requestFraming(parsed)


def decode(
    decoder: ChunkedDecoder, parts: Sequence[bytes]
) -> Tuple[bytes, bool, bytes, List[bytes]]:
    """
    Feed C{parts} in order and gather what came out: the data, whether the
    body ended, every leftover byte and the raw pieces.
    """
    pieces: List[bytes] = []
    leftover = b""
    done = False
    for part in parts:
        got, done, rest = decoder.feed(part)
        pieces.extend(got)
        leftover += rest
    for piece in pieces:
        assert isinstance(piece, bytes)
    return b"".join(pieces), done, leftover, pieces


# HTTPError, Limits


def test_httpErrorCarriesStatusAndReason() -> None:
    """
    Callers answer with C{.status} and log C{.reason}; C{str} shows both.
    """
    error = HTTPError(400, "both Content-Length and Transfer-Encoding")
    assert error.status == 400
    assert error.reason == "both Content-Length and Transfer-Encoding"
    assert str(error) == "400 both Content-Length and Transfer-Encoding"
    assert isinstance(error, Exception)


def test_limitsDefaults() -> None:
    """
    The defaults are nginx-sized: 8k lines, 32k of headers, 100 headers.
    """
    limits = Limits()
    assert (
        limits.maxRequestLine,
        limits.maxHeaderLine,
        limits.maxHeadersSize,
        limits.maxHeaderCount,
    ) == (8192, 8192, 32768, 100)


# findHeadEnd


@pytest.mark.parametrize(
    "buffer, expected",
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27),
        (b"GET / HTTP/1.1\nHost: a\n\n", 24),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\n", 26),
        (b"GET / HTTP/1.1\r\nHost: a\n\r\n", 26),
        (b"GET / HTTP/1.0\r\n\r\n", 18),
        (b"GET / HTTP/1.0\n\n", 16),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody\r\n\r\n", 27),
        (b"GET / HTTP/1.1\r\nHost: a\n\nX\r\n\r\n", 25),
        (b"\r\n\r\nGET / HTTP/1.0\r\n\r\n", 22),
        (b"\n\nGET / HTTP/1.0\n\n", 18),
    ],
)
def test_findHeadEnd(buffer: bytes, expected: int) -> None:
    """
    The head ends just past the first empty line, CRLF or bare LF, and
    never at empty lines before the request line.
    """
    assert findHeadEnd(buffer) == expected


@pytest.mark.parametrize(
    "buffer",
    [
        b"",
        b"\r\n",
        b"\r\n\r\n\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\r",
        b"GET / HTTP/1.1\r\nHost: a\r\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\rX",
    ],
)
def test_findHeadEndIncomplete(buffer: bytes) -> None:
    """
    Until the empty line after the start line arrives there is no head.
    """
    assert findHeadEnd(buffer) == -1


def test_findHeadEndBytearray() -> None:
    """
    A growing receive buffer is usually a bytearray; it works the same.
    """
    assert findHeadEnd(bytearray(b"GET / HTTP/1.0\r\n\r\n")) == 18


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n",
        b"GET / HTTP/1.1\nHost: a\nX: y\n\n",
        b"\r\n\nGET / HTTP/1.1\r\nHost: a\n\r\n",
    ],
)
def test_findHeadEndResumed(head: bytes) -> None:
    """
    Searching again from C{len(old) - 2} after every possible arrival
    finds the end exactly once, at the same place a full search does.
    """
    expected = len(head)
    data = head + b"NEXT"
    for first in range(len(data) + 1):
        for second in range(first, len(data) + 1):
            found = -1
            previous = 0
            for size in (first, second, len(data)):
                found = findHeadEnd(data[:size], max(0, previous - 2))
                previous = size
                if found != -1:
                    break
            assert found == expected, (first, second)


# checkIncompleteHead

SMALL = Limits(maxRequestLine=20, maxHeaderLine=16, maxHeadersSize=64, maxHeaderCount=3)


@pytest.mark.parametrize(
    "buffer",
    [
        b"",
        b"GET /123456789012 HT",
        b"GET /123456789012 HT\r",
        b"GET /1234567890 HTTP\r\n",
        b"GET / HTTP/1.1\r\nHost: 1234567890\r\n",
        b"GET / HTTP/1.1\r\nHost: 1234567890\r",
        b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n",
        b"\r\n\r\nGET / HTTP/1.1\r\n",
    ],
)
def test_checkIncompleteHeadWithinLimits(buffer: bytes) -> None:
    """
    A partial head at or under every limit is left to grow.
    """
    checkIncompleteHead(buffer, SMALL)
    checkIncompleteHead(buffer, SMALL, isRequest=False)


@pytest.mark.parametrize(
    "buffer, status, fragment",
    [
        (b"GET /1234567890123 HT", 414, "request line too long"),
        (b"GET /1234567890123 HTTP/1.1\r\n", 414, "request line too long"),
        (b"\r\n\r\nGET /1234567890123 HT", 414, "request line too long"),
        (b"GET / HTTP/1.1\r\nHost: 123456789012\r\n", 431, "header line too long"),
        (b"GET / HTTP/1.1\r\nHost: 123456789012", 431, "header line too long"),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX: 12345678901234\r",
            431,
            "header line too long",
        ),
        (
            b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n",
            431,
            "too many header lines",
        ),
        (
            b"GET / HTTP/1.1\r\n" + b"A: 1234567890123\r\n" * 3 + b"B: 123456789",
            431,
            "too large",
        ),
        (b"\r\n" * 43, 431, "too large"),
    ],
)
def test_checkIncompleteHeadOverLimits(
    buffer: bytes, status: int, fragment: str
) -> None:
    """
    A partial head already over a limit is refused now, not once complete:
    414 for the request line, 431 for the header section.
    """
    expectError(lambda: checkIncompleteHead(buffer, SMALL), status, fragment)


def test_checkIncompleteHeadResponse() -> None:
    """
    A backend exceeding the limits is at fault, so it is a 502.
    """
    expectError(
        lambda: checkIncompleteHead(b"HTTP/1.1 200 OK 12345678", SMALL, False),
        502,
        "too long status line",
    )
    expectError(
        lambda: checkIncompleteHead(
            b"HTTP/1.1 200 OK\r\nX: 123456789012345", SMALL, False
        ),
        502,
        "too long header line",
    )
    expectError(
        lambda: checkIncompleteHead(
            b"HTTP/1.1 200 OK\r\n" + b"A: 1\r\n" * 4, SMALL, False
        ),
        502,
        "too big header",
    )


def test_checkIncompleteHeadEndlessEmptyLines() -> None:
    """
    Empty lines before the request line are skipped but still bounded.
    """
    checkIncompleteHead(b"\r\n" * 42, SMALL)
    expectError(lambda: checkIncompleteHead(b"\n" * 85, SMALL), 431, "too large")


# parseRequestHead: accepted forms


def test_parseRequestHeadSimple() -> None:
    """
    Method, target, version and headers come out exactly as sent.
    """
    head = parseRequestHead(request(b"Host: example.com", b"Accept: */*"), LIMITS)
    assert head == RequestHead(
        b"GET", b"/", b"HTTP/1.1", [(b"Host", b"example.com"), (b"Accept", b"*/*")]
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /p?q=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n",
        b"GET /p?q=1 HTTP/1.1\nHost: h\nX-A: 1\n\n",
        b"GET /p?q=1 HTTP/1.1\r\nHost: h\nX-A: 1\r\n\n",
        b"\r\nGET /p?q=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n",
        b"\r\n\r\n\nGET /p?q=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n",
        b"GET /p?q=1 HTTP/1.1\r\nHost:h\r\nX-A:1\r\n\r\n",
        b"GET /p?q=1 HTTP/1.1\r\nHost: \t h \t \r\nX-A:\t1\t\r\n\r\n",
    ],
)
def test_parseRequestHeadLineEndingsAndWhitespace(raw: bytes) -> None:
    """
    CRLF, bare LF (as nginx allows), leading empty lines (RFC 9112 2.2)
    and any optional whitespace around values all give the same head.
    """
    assert parseRequestHead(raw[: findHeadEnd(raw)], LIMITS) == RequestHead(
        b"GET", b"/p?q=1", b"HTTP/1.1", [(b"Host", b"h"), (b"X-A", b"1")]
    )


def test_parseFieldsSplitsAtTheFirstColonAndStripsOnlyTheEnds() -> None:
    """
    A field line splits at its first colon, and only the optional
    whitespace at a value's ends goes: colons and inner whitespace stay,
    an empty or all-blank value is C{b""}, obs-text bytes are kept, and
    either line ending works, in request and response heads alike.
    """
    fields = (
        b"Host: h\r\nX-Url: http://a:8/b \t\r\nX-Empty:\r\nX-Blank: \t \n"
        b"X-Inner: a \t b\r\nX-Obs: \x80\xff\r\n\r\n"
    )
    expected = [
        (b"Host", b"h"), (b"X-Url", b"http://a:8/b"), (b"X-Empty", b""),
        (b"X-Blank", b""), (b"X-Inner", b"a \t b"), (b"X-Obs", b"\x80\xff"),
    ]
    assert parseRequestHead(b"GET / HTTP/1.1\r\n" + fields, LIMITS).headers == expected
    assert parseResponseHead(b"HTTP/1.1 200 OK\r\n" + fields, LIMITS).headers == expected


def test_parseRequestHeadKeepsNamesOrderAndDuplicates() -> None:
    """
    Names keep their case, fields their order, and repeated fields each
    stay a separate entry: the proxy relays them, it does not normalise.
    """
    head = parseRequestHead(
        request(b"hOsT: h", b"Cookie: a=1", b"X-Y: 2", b"cookie: b=2"), LIMITS
    )
    assert head.headers == [
        (b"hOsT", b"h"),
        (b"Cookie", b"a=1"),
        (b"X-Y", b"2"),
        (b"cookie", b"b=2"),
    ]


@pytest.mark.parametrize(
    "value, expected",
    [
        (b"", b""),
        (b"   ", b""),
        (b"a  b\tc", b"a  b\tc"),
        (b"\xc3\xa9t\xc3\xa9", b"\xc3\xa9t\xc3\xa9"),
        (b'"quoted", (comment) ;=<>?@[]{}\\', b'"quoted", (comment) ;=<>?@[]{}\\'),
    ],
)
def test_parseRequestHeadValues(value: bytes, expected: bytes) -> None:
    """
    Values may be empty, hold inner whitespace, obs-text and any visible
    character; only the surrounding whitespace goes.
    """
    head = parseRequestHead(request(b"Host: h", b"X: " + value), LIMITS)
    assert head.headers[1] == (b"X", expected)


def test_parseRequestHeadTokenNames() -> None:
    """
    Every tchar of RFC 9110 may appear in a header name and a method.
    """
    tchars = b"!#$%&'*+-.^_`|~09azAZ"
    head = parseRequestHead(
        request(b"Host: h", tchars + b": v", start=tchars + b" / HTTP/1.1"), LIMITS
    )
    assert head.method == tchars
    assert head.headers[1] == (tchars, b"v")


@pytest.mark.parametrize(
    "start, target",
    [
        (b"GET http://example.com/x?y HTTP/1.1", b"http://example.com/x?y"),
        (b"GET HTTPS://example.com HTTP/1.1", b"HTTPS://example.com"),
        (b"OPTIONS * HTTP/1.1", b"*"),
        (b"CONNECT example.com:443 HTTP/1.1", b"example.com:443"),
        (b"CONNECT [::1]:8443 HTTP/1.1", b"[::1]:8443"),
        (b"GET /caf\xc3\xa9?a=%20&b=[]|{} HTTP/1.1", b"/caf\xc3\xa9?a=%20&b=[]|{}"),
        (b"GET // HTTP/1.1", b"//"),
    ],
)
def test_parseRequestHeadTargetForms(start: bytes, target: bytes) -> None:
    """
    Absolute-form, asterisk-form for OPTIONS, authority-form for CONNECT
    and origin-form with raw non-ASCII bytes (which nginx accepts) parse.
    """
    assert parseRequestHead(request(b"Host: h", start=start), LIMITS).target == target


def test_parseRequestHeadHTTP10() -> None:
    """
    HTTP/1.0 needs no Host, and may have no headers at all.
    """
    head = parseRequestHead(b"POST /x HTTP/1.0\r\n\r\n", LIMITS)
    assert head == RequestHead(b"POST", b"/x", b"HTTP/1.0", [])
    assert requestFraming(head) == Framing("none")


@pytest.mark.parametrize(
    "host", [b"", b"example.com", b"example.com:8080", b"[::1]:80", b"10.0.0.1"]
)
def test_parseRequestHeadHostValues(host: bytes) -> None:
    """
    Host may be a name, an address, with a port, or empty (RFC 9112 3.2).
    """
    head = parseRequestHead(request(b"Host: " + host), LIMITS)
    assert headerValue(head.headers, b"host") == host


# parseRequestHead: refusals

REQUEST_ERRORS = [
    # Body framing.
    (
        "cl-and-te",
        request(b"Host: h", b"Content-Length: 5", b"Transfer-Encoding: chunked"),
        400,
        "both Content-Length and Transfer-Encoding",
    ),
    (
        "te-and-cl",
        request(b"Host: h", b"Transfer-Encoding: chunked", b"Content-Length: 0"),
        400,
        "both Content-Length and Transfer-Encoding",
    ),
    (
        "cl-differ",
        request(b"Host: h", b"Content-Length: 5", b"Content-Length: 6"),
        400,
        "conflicting Content-Length",
    ),
    (
        "cl-list-differ",
        request(b"Host: h", b"Content-Length: 5, 6"),
        400,
        "conflicting Content-Length",
    ),
    (
        "cl-letters",
        request(b"Host: h", b"Content-Length: abc"),
        400,
        "invalid Content-Length",
    ),
    (
        "cl-negative",
        request(b"Host: h", b"Content-Length: -1"),
        400,
        "invalid Content-Length",
    ),
    (
        "cl-plus",
        request(b"Host: h", b"Content-Length: +5"),
        400,
        "invalid Content-Length",
    ),
    (
        "cl-hex",
        request(b"Host: h", b"Content-Length: 0x5"),
        400,
        "invalid Content-Length",
    ),
    (
        "cl-decimal",
        request(b"Host: h", b"Content-Length: 5.0"),
        400,
        "invalid Content-Length",
    ),
    (
        "cl-underscore",
        request(b"Host: h", b"Content-Length: 1_0"),
        400,
        "invalid Content-Length",
    ),
    (
        "cl-inner-space",
        request(b"Host: h", b"Content-Length: 5 5"),
        400,
        "invalid Content-Length",
    ),
    (
        "cl-empty",
        request(b"Host: h", b"Content-Length:"),
        400,
        "invalid Content-Length",
    ),
    (
        "cl-empty-element",
        request(b"Host: h", b"Content-Length: 5,"),
        400,
        "invalid Content-Length",
    ),
    (
        "cl-unicode-digit",
        request(b"Host: h", b"Content-Length: \xd9\xa5"),
        400,
        "invalid Content-Length",
    ),
    (
        "cl-overflow",
        request(b"Host: h", b"Content-Length: 9223372036854775808"),
        400,
        "Content-Length too large",
    ),
    (
        "cl-huge",
        request(b"Host: h", b"Content-Length: " + b"9" * 5000),
        400,
        "Content-Length too large",
    ),
    (
        "te-http10",
        request(b"Transfer-Encoding: chunked", start=b"POST / HTTP/1.0"),
        400,
        "HTTP/1.0",
    ),
    (
        "te-chunked-twice",
        request(b"Host: h", b"Transfer-Encoding: chunked, chunked"),
        400,
        "more than once",
    ),
    (
        "te-chunked-two-lines",
        request(
            b"Host: h", b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"
        ),
        400,
        "more than once",
    ),
    (
        "te-empty",
        request(b"Host: h", b"Transfer-Encoding:"),
        400,
        "empty Transfer-Encoding",
    ),
    (
        "te-empty-element",
        request(b"Host: h", b"Transfer-Encoding: ,chunked"),
        400,
        "empty Transfer-Encoding",
    ),
    (
        "te-gzip",
        request(b"Host: h", b"Transfer-Encoding: gzip"),
        501,
        "unsupported transfer coding",
    ),
    (
        "te-gzip-chunked",
        request(b"Host: h", b"Transfer-Encoding: gzip, chunked"),
        501,
        "'gzip'",
    ),
    (
        "te-chunked-gzip",
        request(b"Host: h", b"Transfer-Encoding: chunked, gzip"),
        501,
        "'gzip'",
    ),
    (
        "te-identity",
        request(b"Host: h", b"Transfer-Encoding: identity"),
        501,
        "'identity'",
    ),
    (
        "te-params",
        request(b"Host: h", b"Transfer-Encoding: chunked;q=1"),
        501,
        "unsupported transfer coding",
    ),
    # Field syntax.
    ("obs-fold", request(b"Host: h", b"X: a", b" folded"), 400, "obs-fold"),
    ("obs-fold-tab", request(b"Host: h", b"X: a", b"\tfolded"), 400, "obs-fold"),
    ("obs-fold-first", request(b" X: a", b"Host: h"), 400, "obs-fold"),
    (
        "space-before-colon",
        request(b"Host : h"),
        400,
        "whitespace between header name and colon",
    ),
    (
        "tab-before-colon",
        request(b"Host: h", b"X\t: y"),
        400,
        "whitespace between header name and colon",
    ),
    ("empty-name", request(b"Host: h", b": y"), 400, "empty header name"),
    (
        "name-at",
        request(b"Host: h", b"X@Y: z"),
        400,
        "invalid character in header name",
    ),
    (
        "name-paren",
        request(b"Host: h", b"X(Y): z"),
        400,
        "invalid character in header name",
    ),
    (
        "name-utf8",
        request(b"Host: h", b"N\xc3\xa4me: z"),
        400,
        "invalid character in header name",
    ),
    (
        "name-inner-space",
        request(b"Host: h", b"X Y: z"),
        400,
        "invalid character in header name",
    ),
    ("no-colon", request(b"Host: h", b"NoColon"), 400, "without a colon"),
    ("value-nul", request(b"Host: h", b"X: a\x00b"), 400, "NUL in header value"),
    ("value-cr", request(b"Host: h", b"X: a\rb"), 400, "CR in header value"),
    ("value-cr-end", request(b"Host: h", b"X: ab\r"), 400, "CR in header value"),
    (
        "value-ctl",
        request(b"Host: h", b"X: a\x01b"),
        400,
        "control character in header value",
    ),
    (
        "value-esc",
        request(b"Host: h", b"X: a\x1bb"),
        400,
        "control character in header value",
    ),
    (
        "value-vt",
        request(b"Host: h", b"X: \x0bb"),
        400,
        "control character in header value",
    ),
    (
        "value-del",
        request(b"Host: h", b"X: a\x7f"),
        400,
        "control character in header value",
    ),
    (
        "not-terminated",
        b"GET / HTTP/1.1\r\nHost: h\r\n",
        400,
        "not terminated by an empty line",
    ),
    (
        "empty-line-inside",
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\nX: y\r\n\r\n",
        400,
        "empty line",
    ),
    # Request line.
    (
        "double-space",
        request(b"Host: h", start=b"GET  / HTTP/1.1"),
        400,
        "malformed request line",
    ),
    (
        "leading-space",
        request(b"Host: h", start=b" GET / HTTP/1.1"),
        400,
        "malformed request line",
    ),
    (
        "trailing-space",
        request(b"Host: h", start=b"GET / HTTP/1.1 "),
        400,
        "malformed request line",
    ),
    (
        "four-parts",
        request(b"Host: h", start=b"GET / HTTP/1.1 x"),
        400,
        "malformed request line",
    ),
    ("one-part", request(b"Host: h", start=b"GET"), 400, "malformed request line"),
    (
        "tab-separator",
        request(b"Host: h", start=b"GET\t/\tHTTP/1.1"),
        400,
        "malformed request line",
    ),
    ("bad-method", request(b"Host: h", start=b"G(T / HTTP/1.1"), 400, "invalid method"),
    (
        "empty-method-2",
        request(b"Host: h", start=b"G\x00T / HTTP/1.1"),
        400,
        "invalid method",
    ),
    (
        "target-tab",
        request(b"Host: h", start=b"GET /a\tb HTTP/1.1"),
        400,
        "invalid character in request target",
    ),
    (
        "target-ctl",
        request(b"Host: h", start=b"GET /a\x01 HTTP/1.1"),
        400,
        "invalid character in request target",
    ),
    (
        "target-del",
        request(b"Host: h", start=b"GET /a\x7f HTTP/1.1"),
        400,
        "invalid character in request target",
    ),
    (
        "target-cr",
        request(b"Host: h", start=b"GET /a\rb HTTP/1.1"),
        400,
        "invalid character in request target",
    ),
    (
        "target-relative",
        request(b"Host: h", start=b"GET foo HTTP/1.1"),
        400,
        "invalid request target",
    ),
    (
        "target-asterisk-get",
        request(b"Host: h", start=b"GET * HTTP/1.1"),
        400,
        "invalid request target",
    ),
    (
        "connect-no-port",
        request(b"Host: h", start=b"CONNECT example.com HTTP/1.1"),
        400,
        "invalid request target",
    ),
    (
        "version-lowercase",
        request(b"Host: h", start=b"GET / http/1.1"),
        400,
        "invalid HTTP version",
    ),
    (
        "version-no-dot",
        request(b"Host: h", start=b"GET / HTTP/11"),
        400,
        "invalid HTTP version",
    ),
    (
        "version-long",
        request(b"Host: h", start=b"GET / HTTP/1.10"),
        400,
        "invalid HTTP version",
    ),
    (
        "version-junk",
        request(b"Host: h", start=b"GET / HTTP/1.1x"),
        400,
        "invalid HTTP version",
    ),
    (
        "version-bare-cr",
        b"GET / HTTP/1.1\r\r\nHost: h\r\n\r\n",
        400,
        "invalid HTTP version",
    ),
    (
        "version-2",
        request(b"Host: h", start=b"GET / HTTP/2.0"),
        505,
        "HTTP version not supported",
    ),
    (
        "version-1.2",
        request(b"Host: h", start=b"GET / HTTP/1.2"),
        505,
        "HTTP version not supported",
    ),
    (
        "version-0.9",
        request(b"Host: h", start=b"GET / HTTP/0.9"),
        505,
        "HTTP version not supported",
    ),
    ("http-0.9-simple", b"GET /\r\n\r\n", 505, "HTTP/0.9"),
    # Host.
    ("host-missing", request(b"Accept: */*"), 400, "missing Host"),
    ("host-missing-no-headers", b"GET / HTTP/1.1\r\n\r\n", 400, "missing Host"),
    ("host-twice", request(b"Host: a", b"Host: a"), 400, "more than one Host"),
    (
        "host-twice-http10",
        request(b"Host: a", b"host: b", start=b"GET / HTTP/1.0"),
        400,
        "more than one Host",
    ),
    ("host-space", request(b"Host: a b"), 400, "invalid Host"),
    ("host-slash", request(b"Host: a/b"), 400, "invalid Host"),
    ("host-userinfo", request(b"Host: u@a"), 400, "invalid Host"),
]


@pytest.mark.parametrize(
    "head, status, fragment",
    [case[1:] for case in REQUEST_ERRORS],
    ids=[case[0] for case in REQUEST_ERRORS],
)
def test_parseRequestHeadRefuses(head: bytes, status: int, fragment: str) -> None:
    """
    Each malformed or ambiguous request is refused with the status RFC
    9112 and nginx use, and a reason naming the actual problem.
    """
    expectError(lambda: parseAndFrame(head), status, fragment)


@pytest.mark.parametrize(
    "case",
    [case for case in REQUEST_ERRORS if case[0].startswith(("cl-", "te-"))],
    ids=lambda case: case[0],
)
def test_requestFramingRefusesHandBuiltHeads(case: Tuple[str, bytes, int, str]) -> None:
    """
    requestFraming validates on its own, so a head built without the
    parser (or altered after it) cannot smuggle a bad framing through.
    """
    _, raw, status, fragment = case
    lines = raw.split(b"\r\n")
    version = lines[0].rsplit(b" ", 1)[1]
    headers = []
    for line in lines[1:-2]:
        name, _, value = line.partition(b":")
        headers.append((name, value.strip()))
    head = RequestHead(b"POST", b"/", version, headers)
    expectError(lambda: requestFraming(head), status, fragment)


# Limits on requests


def test_requestLineLimit() -> None:
    """
    The request line may be exactly maxRequestLine long; one more byte is
    a 414, whatever the line ending.
    """
    limits = Limits(maxRequestLine=30)
    line = b"GET /" + b"a" * 16 + b" HTTP/1.1"
    assert len(line) == 30
    parseRequestHead(request(b"Host: h", start=line), limits)
    parseRequestHead(line + b"\nHost: h\n\n", limits)
    longer = b"GET /" + b"a" * 17 + b" HTTP/1.1"
    expectError(
        lambda: parseRequestHead(request(b"Host: h", start=longer), limits),
        414,
        "request line too long",
    )
    expectError(
        lambda: parseRequestHead(longer + b"\nHost: h\n\n", limits),
        414,
        "request line too long",
    )


def test_headerLineLimit() -> None:
    """
    A header line may be exactly maxHeaderLine long; one more is a 431.
    """
    limits = Limits(maxHeaderLine=20)
    parseRequestHead(request(b"Host: h", b"X: " + b"v" * 17), limits)
    expectError(
        lambda: parseRequestHead(request(b"Host: h", b"X: " + b"v" * 18), limits),
        431,
        "header line too long",
    )
    expectError(
        lambda: parseRequestHead(
            b"GET / HTTP/1.1\nHost: h\nX: " + b"v" * 18 + b"\n\n", limits
        ),
        431,
        "header line too long",
    )


def test_headersSizeLimit() -> None:
    """
    maxHeadersSize counts everything after the request line's text; one
    byte more than allowed is a 431.
    """
    head = request(b"Host: h", b"X: 12345")
    size = len(head) - len(b"GET / HTTP/1.1")
    parseRequestHead(head, Limits(maxHeadersSize=size))
    expectError(
        lambda: parseRequestHead(head, Limits(maxHeadersSize=size - 1)),
        431,
        "too large",
    )


def test_headerCountLimit() -> None:
    """
    Up to maxHeaderCount header lines are fine; one more is a 431.
    """
    fields = [b"Host: h"] + [b"X-%d: v" % n for n in range(9)]
    parseRequestHead(request(*fields), Limits(maxHeaderCount=10))
    expectError(
        lambda: parseRequestHead(request(*fields), Limits(maxHeaderCount=9)),
        431,
        "too many header lines",
    )


def test_leadingEmptyLinesLimit() -> None:
    """
    Empty lines before the request line count towards the total size, so
    they cannot be sent forever.
    """
    limits = Limits(maxRequestLine=20, maxHeadersSize=20)
    head = b"GET / HTTP/1.0\r\n\r\n"
    parseRequestHead(b"\r\n" * 11 + head, limits)
    expectError(lambda: parseRequestHead(b"\r\n" * 12 + head, limits), 431, "too large")


# requestFraming


@pytest.mark.parametrize(
    "fields, expected",
    [
        ((), Framing("none")),
        ((b"Content-Length: 0",), Framing("length", 0)),
        ((b"Content-Length: 42",), Framing("length", 42)),
        ((b"content-length: 007",), Framing("length", 7)),
        ((b"Content-Length: 5", b"Content-Length: 5"), Framing("length", 5)),
        ((b"Content-Length: 5, 5",), Framing("length", 5)),
        ((b"Content-Length: 5,5", b"CONTENT-LENGTH: 05"), Framing("length", 5)),
        ((b"Content-Length: %d" % MAX,), Framing("length", MAX)),
        ((b"Content-Length: 0000000000000000000000001",), Framing("length", 1)),
        ((b"Transfer-Encoding: chunked",), Framing("chunked")),
        ((b"transfer-encoding: CHUNKED",), Framing("chunked")),
        ((b"Transfer-Encoding:\tChunked ",), Framing("chunked")),
    ],
)
def test_requestFraming(fields: Tuple[bytes, ...], expected: Framing) -> None:
    """
    No framing header means no body (a request is never read to close);
    otherwise the (collapsed) Content-Length or chunked applies.
    """
    head = parseRequestHead(
        request(b"Host: h", *fields, start=b"POST /upload HTTP/1.1"), LIMITS
    )
    assert requestFraming(head) == expected


# Smuggling


# A request's start and Host, and the same announcing a chunked body.
POST = b"POST / HTTP/1.1\r\nHost: h\r\n"
CHUNKED_POST = POST + b"Transfer-Encoding: chunked\r\n\r\n"

SMUGGLING = [
    (
        "CL.TE",
        POST
        + b"Content-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nSMUGGLED",
    ),
    (
        "TE.CL",
        POST + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
        b"8\r\nSMUGGLED\r\n0\r\n\r\n",
    ),
    (
        "TE.TE-xchunked",
        POST + b"Content-Length: 4\r\nTransfer-Encoding: xchunked\r\n\r\n5c\r\n",
    ),
    (
        "TE-xchunked-alone",
        POST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "TE.TE-space-value",
        POST + b"Content-Length: 4\r\nTransfer-Encoding:  chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "TE.TE-space-line",
        POST + b"Content-Length: 4\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "TE.TE-space-first-line",
        b"POST / HTTP/1.1\r\n Transfer-Encoding: chunked\r\n"
        b"Host: h\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
    ),
    (
        "TE.TE-identity",
        POST
        + b"Content-Length: 4\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    ),
    (
        "TE-identity-alone",
        POST + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    ),
    (
        "TE.TE-space-colon",
        POST + b"Content-Length: 4\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "TE-space-colon-alone",
        POST + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "TE.TE-tab-line",
        POST + b"Content-Length: 4\r\n\tTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "TE.TE-tab-value",
        POST + b"Content-Length: 4\r\nTransfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "TE.TE-duplicate",
        POST
        + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
    ),
    (
        "TE.TE-duplicate-x",
        POST + b"Transfer-Encoding: chunked\r\nTransfer-encoding: x\r\n\r\n0\r\n\r\n",
    ),
    (
        "TE.TE-duplicate-chunked",
        POST
        + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "TE.TE-name-newline",
        POST + b"Content-Length: 4\r\nTransfer-Encoding\r\n: chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "TE.TE-bare-lf-line",
        POST
        + b"Content-Length: 4\r\nX: X\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "TE.TE-bare-cr-line",
        POST + b"X: X\rTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "TE.TE-vertical-tab",
        POST + b"Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "TE.TE-quoted",
        b'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: "chunked"\r\n\r\n0\r\n\r\n',
    ),
    (
        "TE.TE-nul-name",
        POST + b"Transfer-Encoding\x00: chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "TE-http10",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 4\r\n\r\n0\r\n\r\n",
    ),
    (
        "CL.CL",
        POST + b"Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
    ),
    ("CL-plus", POST + b"Content-Length: +4\r\n\r\nabcd"),
    ("CL-space-colon", POST + b"Content-Length : 4\r\n\r\nabcd"),
    ("CL-folded", POST + b"Content-Length: 4\r\n 4\r\n\r\nabcd"),
    (
        "chunk-size-bare-lf",
        CHUNKED_POST + b"5\nhello\r\n0\r\n\r\n",
    ),
    (
        "chunk-data-bare-lf",
        CHUNKED_POST + b"5\r\nhello\n0\r\n\r\n",
    ),
    (
        "chunk-data-overrun",
        CHUNKED_POST + b"3\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "chunk-ext-bare-lf",
        CHUNKED_POST + b"5;a\nb\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "chunk-ext-bare-cr",
        CHUNKED_POST + b"5;a\rb\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "chunk-size-0x",
        CHUNKED_POST + b"0x5\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "chunk-size-overflow",
        CHUNKED_POST + b"10000000000000005\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "chunk-size-space",
        CHUNKED_POST + b" 5\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "last-chunk-bare-lf",
        CHUNKED_POST + b"0\r\n\n",
    ),
]


@pytest.mark.parametrize(
    "raw", [case[1] for case in SMUGGLING], ids=[case[0] for case in SMUGGLING]
)
def test_smugglingRefused(raw: bytes) -> None:
    """
    Classic request smuggling payloads (CL.TE, TE.CL, TE.TE obfuscations,
    chunk framing tricks) never get a body framing the proxy would act on:
    the head or the chunked body is refused as a client error.
    """
    with pytest.raises(HTTPError) as info:
        end = findHeadEnd(raw)
        assert end > 0
        head, framing = parseAndFrame(raw[:end])
        assert framing.kind == "chunked", framing
        decode(ChunkedDecoder(), [raw[end:]])
    assert info.value.status in (400, 501)
    assert info.value.reason


# parseResponseHead


@pytest.mark.parametrize(
    "raw, version, status, reason",
    [
        (b"HTTP/1.1 200 OK\r\n\r\n", b"HTTP/1.1", 200, b"OK"),
        (b"HTTP/1.0 404 Not Found\r\n\r\n", b"HTTP/1.0", 404, b"Not Found"),
        (b"HTTP/1.1 200 \r\n\r\n", b"HTTP/1.1", 200, b""),
        (b"HTTP/1.1 204\r\n\r\n", b"HTTP/1.1", 204, b""),
        (b"HTTP/1.1 204\n\n", b"HTTP/1.1", 204, b""),
        (b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1", 100, b"Continue"),
        (
            b'HTTP/1.1 599 !@#$%^&*() <x> "y"\r\n\r\n',
            b"HTTP/1.1",
            599,
            b'!@#$%^&*() <x> "y"',
        ),
        (
            b"HTTP/1.1 200 \xc3\x87a va\tbien \r\n\r\n",
            b"HTTP/1.1",
            200,
            b"\xc3\x87a va\tbien ",
        ),
        (b"HTTP/1.1 200  OK\r\n\r\n", b"HTTP/1.1", 200, b" OK"),
    ],
)
def test_parseResponseHeadStatusLines(
    raw: bytes, version: bytes, status: int, reason: bytes
) -> None:
    """
    Any reason phrase a client would ignore, even an empty or missing one,
    is accepted and kept as sent.
    """
    assert parseResponseHead(raw, LIMITS) == ResponseHead(version, status, reason, [])


def test_parseResponseHeadHeaders() -> None:
    """
    Response headers parse like request ones: as sent, ordered, trimmed.
    """
    head = parseResponseHead(
        response(b"Content-Type:  text/html ", b"Set-Cookie: a=1", b"set-cookie: b=2"),
        LIMITS,
    )
    assert head.headers == [
        (b"Content-Type", b"text/html"),
        (b"Set-Cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
    ]


RESPONSE_ERRORS = [
    ("short-status", response(start=b"HTTP/1.1 20 OK"), "invalid status line"),
    ("long-status", response(start=b"HTTP/1.1 2000 OK"), "invalid status line"),
    ("letters-status", response(start=b"HTTP/1.1 abc OK"), "invalid status line"),
    ("status-099", response(start=b"HTTP/1.1 099 Low"), "invalid status code"),
    ("status-600", response(start=b"HTTP/1.1 600 High"), "invalid status code"),
    ("double-space", response(start=b"HTTP/1.1  200 OK"), "invalid status line"),
    ("lowercase", response(start=b"http/1.1 200 OK"), "invalid status line"),
    ("icy", response(start=b"ICY 200 OK"), "invalid status line"),
    ("no-status", response(start=b"HTTP/1.1"), "invalid status line"),
    ("reason-ctl", response(start=b"HTTP/1.1 200 O\x01K"), "invalid status line"),
    ("reason-cr", response(start=b"HTTP/1.1 200 O\rK"), "invalid status line"),
    ("version-2", response(start=b"HTTP/2.0 200 OK"), "unsupported HTTP version"),
    ("version-1.2", response(start=b"HTTP/1.2 200 OK"), "unsupported HTTP version"),
    ("version-0.9", response(start=b"HTTP/0.9 200 OK"), "unsupported HTTP version"),
    ("leading-empty-line", b"\r\n" + response(), "invalid status line"),
    ("obs-fold", response(b"X: a", b" b"), "obs-fold"),
    (
        "space-before-colon",
        response(b"Content-Length : 5"),
        "whitespace between header name and colon",
    ),
    ("no-colon", response(b"Broken"), "without a colon"),
    ("value-nul", response(b"X: \x00"), "NUL in header value"),
    (
        "cl-and-te",
        response(b"Content-Length: 5", b"Transfer-Encoding: chunked"),
        "both Content-Length and Transfer-Encoding",
    ),
    ("cl-invalid", response(b"Content-Length: 5x"), "invalid Content-Length"),
    ("cl-negative", response(b"Content-Length: -5"), "invalid Content-Length"),
    (
        "cl-conflict",
        response(b"Content-Length: 5", b"Content-Length: 7"),
        "conflicting Content-Length",
    ),
    (
        "cl-overflow",
        response(b"Content-Length: 99999999999999999999"),
        "Content-Length too large",
    ),
    (
        "te-http10",
        response(b"Transfer-Encoding: chunked", start=b"HTTP/1.0 200 OK"),
        "HTTP/1.0",
    ),
    (
        "te-chunked-twice",
        response(b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"),
        "more than once",
    ),
    (
        "te-empty",
        response(b"Transfer-Encoding: gzip,,chunked"),
        "empty Transfer-Encoding",
    ),
    (
        "not-terminated",
        b"HTTP/1.1 200 OK\r\nX: y\r\n",
        "not terminated by an empty line",
    ),
]


@pytest.mark.parametrize(
    "head, fragment",
    [case[1:] for case in RESPONSE_ERRORS],
    ids=[case[0] for case in RESPONSE_ERRORS],
)
def test_parseResponseHeadRefuses(head: bytes, fragment: str) -> None:
    """
    A backend response that is malformed or ambiguously framed is a 502:
    the proxy must not relay what it cannot frame safely.
    """
    expectError(lambda: parseResponseHead(head, LIMITS), 502, fragment)


def test_parseResponseHeadLimits() -> None:
    """
    Limits apply to responses too, as 502s (nginx's "upstream sent too big
    header").
    """
    expectError(
        lambda: parseResponseHead(
            response(start=b"HTTP/1.1 200 " + b"x" * 20), Limits(maxRequestLine=20)
        ),
        502,
        "too long status line",
    )
    expectError(
        lambda: parseResponseHead(
            response(b"X: " + b"v" * 20), Limits(maxHeaderLine=20)
        ),
        502,
        "too long header line",
    )
    expectError(
        lambda: parseResponseHead(response(b"X: 1", b"Y: 2"), Limits(maxHeaderCount=1)),
        502,
        "too big header",
    )
    expectError(
        lambda: parseResponseHead(
            response(start=b"HTTP/1.1 200 " + b"x" * 40),
            Limits(maxRequestLine=20, maxHeadersSize=20),
        ),
        502,
        "too big header",
    )
    expectError(
        lambda: parseResponseHead(
            response(b"X: " + b"v" * 30), Limits(maxHeadersSize=30)
        ),
        502,
        "too big header",
    )


# responseFraming


@pytest.mark.parametrize(
    "method, raw, expected",
    [
        (b"HEAD", response(b"Content-Length: 100"), Framing("none")),
        (b"HEAD", response(b"Transfer-Encoding: chunked"), Framing("none")),
        (b"GET", response(start=b"HTTP/1.1 100 Continue"), Framing("none")),
        (
            b"GET",
            response(b"Upgrade: websocket", start=b"HTTP/1.1 101 Switching Protocols"),
            Framing("none"),
        ),
        (
            b"GET",
            response(b"Content-Length: 10", start=b"HTTP/1.1 204 No Content"),
            Framing("none"),
        ),
        (
            b"GET",
            response(b"Content-Length: 10", start=b"HTTP/1.1 304 Not Modified"),
            Framing("none"),
        ),
        (
            b"CONNECT",
            response(start=b"HTTP/1.1 200 Connection Established"),
            Framing("none"),
        ),
        (b"CONNECT", response(start=b"HTTP/1.1 407 Auth"), Framing("eof")),
        (b"GET", response(b"Transfer-Encoding: chunked"), Framing("chunked")),
        (b"GET", response(b"Transfer-Encoding: Chunked"), Framing("chunked")),
        (b"GET", response(b"Transfer-Encoding: gzip, chunked"), Framing("chunked")),
        (
            b"GET",
            response(b"Transfer-Encoding: gzip", b"Transfer-Encoding: chunked"),
            Framing("chunked"),
        ),
        (b"GET", response(b"Transfer-Encoding: gzip"), Framing("eof")),
        (b"GET", response(b"Transfer-Encoding: chunked, gzip"), Framing("eof")),
        (b"GET", response(b"Content-Length: 0"), Framing("length", 0)),
        (b"POST", response(b"Content-Length: 1234"), Framing("length", 1234)),
        (
            b"GET",
            response(b"Content-Length: 3, 3", b"Content-Length: 3"),
            Framing("length", 3),
        ),
        (b"GET", response(), Framing("eof")),
        (b"GET", response(start=b"HTTP/1.0 200 OK"), Framing("eof")),
        (
            b"GET",
            response(b"Content-Length: 5", start=b"HTTP/1.0 200 OK"),
            Framing("length", 5),
        ),
        (b"GET", response(start=b"HTTP/1.1 404 Not Found"), Framing("eof")),
    ],
)
def test_responseFraming(method: bytes, raw: bytes, expected: Framing) -> None:
    """
    HEAD, 1xx, 204, 304 and a CONNECT's 2xx have no body; then chunked
    when it is the final coding, a Content-Length, or read to close.
    """
    assert responseFraming(method, parseResponseHead(raw, LIMITS)) == expected


def test_responseFramingRefusesHandBuiltHeads() -> None:
    """
    responseFraming validates on its own too, and refuses even when the
    status means there is no body: a confused backend is not trusted.
    """
    head = ResponseHead(
        b"HTTP/1.1",
        304,
        b"",
        [(b"Content-Length", b"1"), (b"Transfer-Encoding", b"chunked")],
    )
    expectError(
        lambda: responseFraming(b"GET", head),
        502,
        "both Content-Length and Transfer-Encoding",
    )
    head = ResponseHead(b"HTTP/1.1", 200, b"", [(b"Content-Length", b"1, 2")])
    expectError(
        lambda: responseFraming(b"GET", head), 502, "conflicting Content-Length"
    )


# headerValue


def test_headerValue() -> None:
    """
    Lookups ignore case and return the first value, or None when absent.
    """
    headers = [(b"Host", b"a"), (b"X-Thing", b"1"), (b"x-thing", b"2"), (b"Empty", b"")]
    assert headerValue(headers, b"x-thing") == b"1"
    assert headerValue(headers, b"host") == b"a"
    assert headerValue(headers, b"empty") == b""
    assert headerValue(headers, b"missing") is None
    assert headerValue(headers, b"x-thin") is None
    assert headerValue([], b"host") is None


# ChunkedDecoder

CHUNKED = (
    b'4;ext=1;q="a b\\"c" ; flag\r\nWiki\r\n'
    b"5\r\npedia\r\n"
    b"E\r\n in\r\n\r\nchunks.\r\n"
    b"000\r\n"
    b"Expires: never\r\n"
    b"X-Sum:  abc \r\n"
    b"\r\n"
)
CHUNKED_DATA = b"Wikipedia in\r\n\r\nchunks."
CHUNKED_TRAILERS = [(b"Expires", b"never"), (b"X-Sum", b"abc")]


def test_chunkedWhole() -> None:
    """
    A complete body decodes in one call, with its trailers and the bytes
    of the next message handed back.
    """
    decoder = ChunkedDecoder()
    data, done, leftover, _ = decode(decoder, [CHUNKED + b"GET / HTTP/1.1\r\n"])
    assert (data, done, leftover) == (CHUNKED_DATA, True, b"GET / HTTP/1.1\r\n")
    assert decoder.trailers == CHUNKED_TRAILERS


def test_chunkedEverySplitPoint() -> None:
    """
    However the body is cut in two, the result is the same.
    """
    body = CHUNKED + b"NEXT"
    for cut in range(len(body) + 1):
        decoder = ChunkedDecoder()
        data, done, leftover, _ = decode(decoder, [body[:cut], body[cut:]])
        assert (data, done, leftover) == (CHUNKED_DATA, True, b"NEXT"), cut
        assert decoder.trailers == CHUNKED_TRAILERS, cut


def test_chunkedEveryThreeWaySplit() -> None:
    """
    Cutting twice, anywhere, including empty parts, changes nothing.
    """
    body = b"3;a=b\r\nabc\r\n1\r\nd\r\n0\r\nT: v\r\n\r\nX"
    for first in range(len(body) + 1):
        for second in range(first, len(body) + 1):
            decoder = ChunkedDecoder()
            parts = [body[:first], body[first:second], body[second:]]
            data, done, leftover, _ = decode(decoder, parts)
            assert (data, done, leftover) == (b"abcd", True, b"X"), (first, second)
            assert decoder.trailers == [(b"T", b"v")]


def test_chunkedByteByByte() -> None:
    """
    One byte at a time works, and the body is not done before its end.
    """
    decoder = ChunkedDecoder()
    data = []
    for index in range(len(CHUNKED)):
        pieces, done, leftover = decoder.feed(CHUNKED[index : index + 1])
        data.extend(pieces)
        assert done == (index == len(CHUNKED) - 1)
        assert leftover == b""
    assert b"".join(data) == CHUNKED_DATA


def test_chunkedPiecesAreSlicesNotCopies() -> None:
    """
    Chunk data comes out as one slice per chunk per call (the input object
    itself when it is all data), never assembled byte by byte.
    """
    payload = bytes(range(256)) * 4096
    body = b"%x\r\n" % len(payload) + payload + b"\r\n0\r\n\r\n"
    decoder = ChunkedDecoder()
    start = body.index(b"\r\n") + 2
    pieces, done, _ = decoder.feed(body[: start + 1000])
    assert pieces == [payload[:1000]] and not done
    middle = body[start + 1000 : start + 1000 + 65536]
    pieces, done, _ = decoder.feed(middle)
    assert len(pieces) == 1 and pieces[0] is middle and not done
    data, done, leftover, pieces = decode(decoder, [body[start + 1000 + 65536 :]])
    assert done and leftover == b"" and len(pieces) == 1
    assert data == payload[1000 + 65536 :]


def test_chunkedBigChunks() -> None:
    """
    Large chunks spanning many reads come out whole and in order.
    """
    first = b"a" * (1 << 20)
    second = b"b" * 300000
    body = b"100000\r\n" + first + b"\r\n" + b"493E0\r\n" + second + b"\r\n0\r\n\r\n"
    parts = [body[offset : offset + 65536] for offset in range(0, len(body), 65536)]
    data, done, leftover, pieces = decode(ChunkedDecoder(), parts)
    assert data == first + second and done and leftover == b""
    assert len(pieces) <= len(parts) + 1


@pytest.mark.parametrize(
    "body, expected",
    [
        (b"0\r\n\r\n", b""),
        (b"1\r\nx\r\n0\r\n\r\n", b"x"),
        (b"a\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
        (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
        (b"0000000000000000005\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"5 ;a\r\nhello\r\n0 ;b=c\r\n\r\n", b"hello"),
        (b'5\t;\ta\t=\t"x"\r\nhello\r\n0\r\n\r\n', b"hello"),
        (b'5;a="\xc3\xa9\\\\"\r\nhello\r\n0\r\n\r\n', b"hello"),
        (b"2\r\n\r\n\r\n0\r\n\r\n", b"\r\n"),
    ],
)
def test_chunkedAcceptedForms(body: bytes, expected: bytes) -> None:
    """
    Upper or lower hex, leading zeros and extensions with BWS, tokens and
    quoted strings are all valid chunked syntax.
    """
    data, done, leftover, _ = decode(ChunkedDecoder(), [body])
    assert (data, done, leftover) == (expected, True, b"")


def test_chunkedLargestSize() -> None:
    """
    A size up to 2**63 - 1 is accepted (it is then waited for); above that
    it is too large.
    """
    assert ChunkedDecoder().feed(b"7fffffffffffffff\r\nabc") == ([b"abc"], False, b"")
    assert ChunkedDecoder().feed(b"00007FFFFFFFFFFFFFFF\r\n") == ([], False, b"")
    expectError(
        lambda: ChunkedDecoder().feed(b"8000000000000000\r\n"),
        400,
        "chunk size too large",
    )
    expectError(
        lambda: ChunkedDecoder().feed(b"10000000000000000\r\n"),
        400,
        "chunk size too large",
    )


CHUNKED_ERRORS = [
    ("size-empty", b"\r\nabc\r\n0\r\n\r\n", "empty chunk size"),
    ("size-non-hex", b"g\r\n", "invalid chunk size"),
    ("size-plus", b"+5\r\nhello\r\n", "invalid chunk size"),
    ("size-minus", b"-5\r\nhello\r\n", "invalid chunk size"),
    ("size-0x", b"0x5\r\nhello\r\n", "invalid chunk size"),
    ("size-underscore", b"1_0\r\n", "invalid chunk size"),
    ("size-space-before", b" 5\r\nhello\r\n", "whitespace before chunk size"),
    ("size-tab-before", b"\t5\r\nhello\r\n", "whitespace before chunk size"),
    ("size-space-after", b"5 \r\nhello\r\n", "whitespace after chunk size"),
    ("size-too-large", b"8000000000000000\r\n", "chunk size too large"),
    ("size-too-long", b"123456789abcdef01\r\n", "chunk size too large"),
    ("size-bare-lf", b"5\nhello\r\n0\r\n\r\n", "not terminated by CRLF"),
    ("size-bare-cr", b"5\rhello\r\n", "invalid chunk size"),
    ("size-nul", b"5\x00\r\nhello\r\n", "invalid chunk size"),
    ("ext-empty-name", b"5;\r\nhello\r\n", "invalid chunk extension"),
    ("ext-bad-name", b"5;a@b\r\nhello\r\n", "invalid chunk extension"),
    ("ext-ctl", b"5;a=\x01\r\nhello\r\n", "invalid chunk extension"),
    ("ext-bare-cr", b"5;a\rb\r\nhello\r\n", "invalid chunk extension"),
    ("ext-bare-lf", b"5;a\nb\r\nhello\r\n", "not terminated by CRLF"),
    ("ext-unterminated-quote", b'5;a="b\r\nhello\r\n', "invalid chunk extension"),
    ("ext-no-semicolon", b"5 a\r\nhello\r\n", "invalid chunk extension"),
    ("ext-empty-value", b"5;a=\r\nhello\r\n", "invalid chunk extension"),
    ("data-too-long", b"3\r\nhello\r\n0\r\n\r\n", "chunk data not followed by CRLF"),
    ("data-bare-lf", b"5\r\nhello\n0\r\n\r\n", "chunk data not followed by CRLF"),
    ("data-bare-cr", b"5\r\nhello\r0\r\n\r\n", "chunk data not followed by CRLF"),
    ("data-lf-cr", b"5\r\nhello\n\r0\r\n\r\n", "chunk data not followed by CRLF"),
    ("last-chunk-bare-lf", b"0\n\r\n", "not terminated by CRLF"),
    ("final-bare-lf", b"0\r\n\n", "trailer line not terminated by CRLF"),
    ("trailer-bare-lf", b"0\r\nX: y\n\r\n", "trailer line not terminated by CRLF"),
    ("trailer-obs-fold", b"0\r\nX: y\r\n z\r\n\r\n", "obs-fold"),
    ("trailer-no-colon", b"0\r\nXy\r\n\r\n", "without a colon"),
    (
        "trailer-space-before-colon",
        b"0\r\nX : y\r\n\r\n",
        "whitespace between header name and colon",
    ),
    ("trailer-ctl", b"0\r\nX: \x01\r\n\r\n", "control character in header value"),
]


@pytest.mark.parametrize(
    "body, fragment",
    [case[1:] for case in CHUNKED_ERRORS],
    ids=[case[0] for case in CHUNKED_ERRORS],
)
def test_chunkedRefuses(body: bytes, fragment: str) -> None:
    """
    Malformed chunked framing is a 400 naming the problem, however the
    bytes arrive: whole, cut anywhere in two, or one at a time.
    """
    expectError(lambda: decode(ChunkedDecoder(), [body]), 400, fragment)
    for cut in range(len(body) + 1):
        expectError(
            lambda: decode(ChunkedDecoder(), [body[:cut], body[cut:]]), 400, fragment
        )
    parts = [body[index : index + 1] for index in range(len(body))]
    expectError(lambda: decode(ChunkedDecoder(), parts), 400, fragment)


def test_chunkedErrorIsFinal() -> None:
    """
    After refusing, the decoder keeps refusing instead of resyncing on
    attacker-chosen bytes.
    """
    decoder = ChunkedDecoder()
    expectError(lambda: decoder.feed(b"x\r\n"), 400, "invalid chunk size")
    expectError(lambda: decoder.feed(b"0\r\n\r\n"), 400, "invalid chunk size")
    expectError(lambda: decoder.feed(b""), 400, "invalid chunk size")


def test_chunkedExtensionBudget() -> None:
    """
    Extensions are not body bytes, so their total across the body is
    capped; ordinary sizes cost nothing however many chunks there are.
    """
    decoder = ChunkedDecoder(maxChunkExtensionsAndTrailers=10)
    data, done, _, _ = decode(
        decoder, [b"1;a=1234\r\nx\r\n" + b"1\r\ny\r\n" * 1000 + b"0;b\r\n\r\n"]
    )
    assert data == b"x" + b"y" * 1000 and done
    decoder = ChunkedDecoder(maxChunkExtensionsAndTrailers=10)
    expectError(
        lambda: decoder.feed(b"1;a=1234\r\nx\r\n1;b=1234\r\ny\r\n"),
        400,
        "chunk extensions and trailers too long",
    )


def test_chunkedEndlessSizeLine() -> None:
    """
    A size line that never ends is refused once it is over the budget,
    without waiting for its LF.
    """
    decoder = ChunkedDecoder(maxChunkExtensionsAndTrailers=100)
    decoder.feed(b"1;a=")
    decoder.feed(b"b" * 100)
    expectError(lambda: decoder.feed(b"b" * 20), 400, "too long")
    decoder = ChunkedDecoder(maxChunkExtensionsAndTrailers=100)
    expectError(lambda: decode(decoder, [b"0"] * 200), 400, "too long")


def test_chunkedTrailerBudget() -> None:
    """
    Trailers share the budget, whole or still arriving.
    """
    trailer = b"X-Long: " + b"v" * 50 + b"\r\n"
    decoder = ChunkedDecoder(maxChunkExtensionsAndTrailers=len(trailer))
    assert decode(decoder, [b"0\r\n" + trailer + b"\r\n"])[1]
    decoder = ChunkedDecoder(maxChunkExtensionsAndTrailers=len(trailer) - 1)
    expectError(lambda: decoder.feed(b"0\r\n" + trailer + b"\r\n"), 400, "too long")
    decoder = ChunkedDecoder(maxChunkExtensionsAndTrailers=len(trailer))
    decoder.feed(b"0\r\n")
    expectError(lambda: decode(decoder, [b"X: " + b"v" * 100]), 400, "too long")


def test_chunkedAfterDone() -> None:
    """
    Once the body is complete, everything fed is the next message's.
    """
    decoder = ChunkedDecoder()
    assert decoder.feed(b"0\r\n\r") == ([], False, b"")
    assert decoder.feed(b"\nGET") == ([], True, b"GET")
    assert decoder.feed(b" / HTTP/1.1") == ([], True, b" / HTTP/1.1")
    assert decoder.trailers == []


def test_chunkedEmptyFeed() -> None:
    """
    Feeding nothing changes nothing.
    """
    decoder = ChunkedDecoder()
    assert decoder.feed(b"") == ([], False, b"")
    assert decoder.feed(b"3\r\nab") == ([b"ab"], False, b"")
    assert decoder.feed(b"") == ([], False, b"")
    assert decode(decoder, [b"c\r\n0\r\n\r\n"])[:3] == (b"c", True, b"")


def test_chunkedRandomRoundTrip() -> None:
    """
    Random data, chunk sizes, extensions and cut points (seeded, so any
    failure reproduces) always decode back to the data.
    """
    rng = random.Random(9112)
    for _ in range(200):
        data = rng.randbytes(rng.randrange(0, 3000))
        body = []
        offset = 0
        while offset < len(data):
            size = rng.randrange(1, 700)
            chunk = data[offset : offset + size]
            offset += size
            sizeText = b"%x" % len(chunk)
            if rng.random() < 0.3:
                sizeText = sizeText.upper().rjust(rng.randrange(1, 20), b"0")
            extension = rng.choice([b"", b";a", b' ; b = "q;\\"" ;c=d'])
            body.append(sizeText + extension + b"\r\n" + chunk + b"\r\n")
        body.append(b"0\r\n" + rng.choice([b"", b"T: 1\r\n"]) + b"\r\nNEXT")
        encoded = b"".join(body)
        cuts = sorted(rng.randrange(len(encoded) + 1) for _ in range(rng.randrange(6)))
        parts = [encoded[a:b] for a, b in zip([0] + cuts, cuts + [len(encoded)])]
        decoded, done, leftover, _ = decode(ChunkedDecoder(), parts)
        assert (decoded, done, leftover) == (data, True, b"NEXT")


# Long hostile inputs: the regexes are greedy (Python 3.9 has no
# possessive quantifiers) and must stay linear when a long input fails.

BIG = Limits(
    maxRequestLine=1 << 20,
    maxHeaderLine=1 << 20,
    maxHeadersSize=1 << 22,
    maxHeaderCount=1 << 16,
)
KIB64 = 64 * 1024

HOSTILE_REQUESTS = [
    (
        "64k-value-then-ctl",
        request(b"Host: a", b"X: " + b"v !~\x80" * (KIB64 // 4) + b"\x7f"),
        400,
        "control character",
    ),
    (
        "64k-value-then-bare-cr",
        request(b"Host: a", b"X: " + b"v" * KIB64 + b"\rx"),
        400,
        "CR in header value",
    ),
    (
        "64k-name-then-space",
        request(b"Host: a", b"X" * KIB64 + b" : y"),
        400,
        "whitespace between header name and colon",
    ),
    (
        "4k-lines-last-bad",
        request(b"Host: a", *[b"X-%d: %s" % (i, b"v" * 10) for i in range(4096)], b"X"),
        400,
        "without a colon",
    ),
    (
        "64k-target-no-version",
        request(start=b"GET /" + b"a" * KIB64 + b" HTTP/1.1\x7f"),
        400,
        "invalid HTTP version",
    ),
    (
        "64k-method-then-ctl",
        request(start=b"G" * KIB64 + b"\x01 / HTTP/1.1"),
        400,
        "invalid method",
    ),
    (
        "64k-connect-host-no-port",
        request(b"Host: a", start=b"CONNECT " + b"a" * KIB64 + b":80x HTTP/1.1"),
        400,
        "invalid request target",
    ),
    (
        "64k-connect-ipv6-unclosed",
        request(b"Host: a", start=b"CONNECT [" + b"0:" * (KIB64 // 2) + b":80 HTTP/1.1"),
        400,
        "invalid request target",
    ),
    (
        "64k-scheme-no-colon",
        request(b"Host: a", start=b"GET " + b"a+" * (KIB64 // 2) + b"/x HTTP/1.1"),
        400,
        "invalid request target",
    ),
]


@pytest.mark.timeout(60, method="thread")
@pytest.mark.parametrize(
    "head, status, fragment",
    [case[1:] for case in HOSTILE_REQUESTS],
    ids=[case[0] for case in HOSTILE_REQUESTS],
)
def test_hostileRequestHeads(head: bytes, status: int, fragment: str) -> None:
    """
    Long request heads that fail only at their last byte, under limits
    large enough to reach the regexes, are refused for the right reason
    (and, the timeout guards, without backtracking blow-ups).
    """
    for _ in range(3):
        expectError(lambda: parseRequestHead(head, BIG), status, fragment)


@pytest.mark.timeout(60, method="thread")
def test_hostileResponseHeads() -> None:
    """
    The same for a backend's status line and header section.
    """
    expectError(
        lambda: parseResponseHead(
            response(start=b"HTTP/1.1 200 " + b"r " * (KIB64 // 2) + b"\x01"), BIG
        ),
        502,
        "invalid status line",
    )
    expectError(
        lambda: parseResponseHead(
            response(b"X: " + b"\t" * KIB64 + b"\x00"), BIG
        ),
        502,
        "NUL in header value",
    )


HOSTILE_CHUNK_LINES = [
    ("8k-empty-values", b"1" + b";a=" * 2731),
    ("8k-names-only-then-equals", b"1" + b";a" * 4096 + b"="),
    ("8k-spaces-then-junk", b"1;a" + b" \t" * 4096 + b"x"),
    ("8k-unclosed-quote", b'1;a="' + b'q\\"' * 2731),
    ("8k-quoted-then-junk", b'1;a="' + b"q" * 8192 + b'"x'),
    ("8k-hex-then-junk", b"0" * 8192 + b"g"),
    ("8k-token-then-quote", b"1;" + b"t" * 8192 + b'"'),
]


@pytest.mark.timeout(60, method="thread")
@pytest.mark.parametrize(
    "line",
    [case[1] for case in HOSTILE_CHUNK_LINES],
    ids=[case[0] for case in HOSTILE_CHUNK_LINES],
)
def test_hostileChunkSizeLines(line: bytes) -> None:
    """
    Long malformed chunk-size lines, within a budget large enough to reach
    the regex, are refused; so are long trailer lines.
    """
    decoder = ChunkedDecoder(maxChunkExtensionsAndTrailers=1 << 20)
    expectError(lambda: decoder.feed(line + b"\r\nx\r\n0\r\n\r\n"), 400, "chunk")


@pytest.mark.timeout(60, method="thread")
def test_hostileTrailer() -> None:
    """
    A long trailer line whose last byte is bad is refused.
    """
    decoder = ChunkedDecoder(maxChunkExtensionsAndTrailers=1 << 20)
    expectError(
        lambda: decoder.feed(b"0\r\nX: " + b"v " * (KIB64 // 2) + b"\x01\r\n\r\n"),
        400,
        "control character",
    )


@pytest.mark.timeout(60, method="thread")
def test_hostileLongValidInputs() -> None:
    """
    Long inputs that are valid still parse, the whole of them kept.
    """
    value = b"v !~\x80" * (KIB64 // 4)
    head = parseRequestHead(request(b"Host: a", b"X: " + value), BIG)
    assert head.headers[-1] == (b"X", value.rstrip())
    decoder = ChunkedDecoder(maxChunkExtensionsAndTrailers=1 << 20)
    extensions = b';a="' + b'q\\"' * 2731 + b'"' + b" ; b = c" * 1000
    data, done, _, _ = decode(decoder, [b"1" + extensions + b"\r\nx\r\n0\r\n\r\n"])
    assert (data, done) == (b"x", True)


def _possessiveSpellings() -> List[Tuple[str, bytes, bytes]]:
    """
    The parser's regexes as they were spelled with Python 3.11's
    possessive quantifiers, before Python 3.9 support, by module name,
    each with a string it matches to mutate.
    """
    token = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]++"
    value = rb"[\t\x20-\x7e\x80-\xff]"
    quoted = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*+"'
    extension = (
        rb"(?:[ \t]*+;[ \t]*+" + token + rb"(?:[ \t]*+=[ \t]*+(?:" + token + rb"|"
        + quoted + rb"))?+)*+"
    )
    return [
        ("_TOKEN_RE", token, b"X-a"),
        ("_TARGET_RE", rb"[\x21-\x7e\x80-\xff]++", b"/a?b"),
        (
            "_REQUEST_LINE_RE",
            rb"(" + token + rb") ([\x21-\x7e\x80-\xff]++) (HTTP/1\.[01])\r?",
            b"GET /a HTTP/1.1\r",
        ),
        (
            "_STATUS_LINE_RE",
            rb"(HTTP/1\.[01]) ([0-9]{3})(?: (" + value + rb"*+))?\r?",
            b"HTTP/1.1 200 O K\r",
        ),
        ("_FIELD_LINE_RE", token + rb":" + value + rb"*+", b"a: b c"),
        ("_ABSOLUTE_FORM_RE", rb"[A-Za-z][A-Za-z0-9+.\-]*+://", b"h+1.s://"),
        (
            "_AUTHORITY_FORM_RE",
            rb"(?:\[[0-9A-Fa-f:.]++\]|[^/?#@\[\]:]++):[0-9]++",
            b"[::1]:80",
        ),
        (
            "_CHUNK_LINE_RE",
            rb"([0-9A-Fa-f]++)(" + extension + rb")\r",
            b'1F ;a = b;c="d\\"e" \t;f\r',
        ),
        ("_HEX_RE", rb"[0-9A-Fa-f]*+", b"0aF"),
    ]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="possessive quantifiers need 3.11")
@pytest.mark.parametrize(
    "name, possessive, seed",
    _possessiveSpellings(),
    ids=[case[0] for case in _possessiveSpellings()],
)
def test_greedyRegexesMatchPossessiveSpellings(
    name: str, possessive: bytes, seed: bytes
) -> None:
    """
    Each greedy regex matches exactly what its possessive spelling did
    (same spans and groups, by match and fullmatch) on random mutations of
    a matching string, made of the bytes that delimit tokens, values and
    extensions.
    """
    greedy = getattr(parser, name)
    original = re.compile(possessive)
    pieces = [bytes([byte]) for byte in b'aF9!:;= \t\r\n"\\\x00\x7f\x80[]/@?#.+']
    pieces += [b"HTTP/1.1", b"200", b"\r\n", b"://", b";a=", b'"q"', b"x:1\r\n"]
    rng = random.Random(name)
    for _ in range(20000):
        text = seed
        for _ in range(rng.randrange(4)):
            at = rng.randrange(len(text) + 1)
            text = text[:at] + rng.choice(pieces) + text[at + rng.randrange(2) :]
        for method in ("match", "fullmatch"):
            mine = getattr(greedy, method)(text)
            theirs = getattr(original, method)(text)
            assert (mine and (mine.span(), mine.groups())) == (
                theirs and (theirs.span(), theirs.groups())
            ), (method, text)


def test_headerSectionCheckMatchesTheGrammar() -> None:
    """
    The header section check, a few whole-section passes in C instead of a
    regex, accepts exactly the sections the grammar does (every line
    C{token ":" field-value} ending CRLF or LF, then an empty line), on
    random mutations of a valid section made of the bytes that delimit
    names, values and lines; what it accepts splits into the same fields.
    """
    grammar = re.compile(
        rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r?\n)*\r?\n"
    )
    seed = b"a: b \r\nc:\nd:e\r\nX-Y:  z\t\r\n\r\n"
    pieces = [bytes([byte]) for byte in b"aZ9!:; \t\r\n\x00\x01\x0b\x7f\x80\xff@(\""]
    pieces += [b"\r\n", b"x:1\r\n", b"\r\n ", b" :", b"::"]
    rng = random.Random("fields")
    statusLine = b"HTTP/1.1 200 OK\r\n"
    accepted = 0
    for _ in range(20000):
        text = seed
        for _ in range(rng.randrange(4)):
            at = rng.randrange(len(text) + 1)
            text = text[:at] + rng.choice(pieces) + text[at + rng.randrange(2) :]
        head = statusLine + text
        lines = head.split(b"\n")
        if lines[-1] or lines[-2] not in (b"", b"\r"):
            continue  # not a head findHeadEnd delimits; checked elsewhere
        try:
            headers, lowers = parser._parseFields(head, lines, Limits(), False)
        except HTTPError as error:
            assert error.status == 502
            assert grammar.fullmatch(text) is None, text
            continue
        assert grammar.fullmatch(text) is not None, text
        accepted += 1
        expected = [line.rstrip(b"\r").partition(b":") for line in lines[1:-2]]
        assert headers == [(name, value.strip(b" \t")) for name, _, value in expected]
        assert lowers == [name.lower() for name, _ in headers]
    assert 1000 < accepted < 19000


def test_headsCarryTheirLoweredNames() -> None:
    """
    A parsed head keeps its header names lowercased, in order, one per
    field line (repeats included), for later passes to look up in C;
    L{headerLowers} lowers a head built without them.
    """
    request = parseRequestHead(
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a: 2\r\n\r\n", Limits()
    )
    assert request.lowers == [b"host", b"x-a", b"x-a"]
    response = parseResponseHead(
        b"HTTP/1.1 200 OK\r\nContent-LENGTH: 0\r\nConnection: close\r\n\r\n", Limits()
    )
    assert response.lowers == [b"content-length", b"connection"]
    assert headerLowers(ResponseHead(b"HTTP/1.1", 200, b"", [(b"ETag", b"x")])) == [b"etag"]


def test_fieldValuesInOrder() -> None:
    """
    L{fieldValues} gives every value of a name, in order, whether the
    name is absent, present once or repeated.
    """
    headers = [(b"A", b"1"), (b"B", b"2"), (b"a", b"3")]
    lowers = [b"a", b"b", b"a"]
    assert fieldValues(headers, lowers, b"a") == [b"1", b"3"]
    assert fieldValues(headers, lowers, b"b") == [b"2"]
    assert fieldValues(headers, lowers, b"c") == []
