# -*- test-case-name: tests.unit.test_http_parser -*-
"""
HTTP/1.x message heads and body framing, parsed strictly enough (RFC 9112)
that the proxy and any server behind it can never disagree about where a
message ends: anything two implementations could frame differently is
rejected instead of guessed at, which is what stops request smuggling.

Everything here is pure (no I/O, no Twisted) and sits on the hot path, so
the common case is a few C-level bytes operations and one precompiled regex
per head; the slow, precise diagnosis only runs once a message is known to
be bad.
"""

from __future__ import annotations

import re
from typing import List, Optional, Sequence, Tuple, Union

import attr

Headers = List[Tuple[bytes, bytes]]

# The largest body or chunk size accepted: nginx's NGX_MAX_OFF_T_VALUE.
_MAX_SIZE = 2**63 - 1

_CR = 13
_LF = 10
_SLASH = 47

# Python 3.9 (and so PyPy 3.9) has neither possessive quantifiers nor
# atomic groups, so every repeat below is an ordinary greedy one, written
# so that it can match its text in one way only.  A repeated class is
# always followed by a delimiter the class excludes, or by the end: a token
# by " ", ":", ";", "=", whitespace or CR; a field value or reason phrase
# by CR or LF; a target by " "; quoted-string text by '"' or "\\"; hex
# digits by whitespace, ";" or CR.  Alternatives start with different
# bytes, and an optional part or a further repetition starts with a byte
# that what would follow instead cannot start with.  So a greedy match
# finds exactly what a possessive one would, and a failing one stays
# linear: backtracking gives back one byte (or one iteration) at a time
# and each retry fails on its first byte, never re-scanning the rest.
# tests/unit/test_http_parser.py feeds long hostile inputs to check it.
_TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
_TOKEN = rb"[" + _TCHAR + rb"]+"
# field-vchar (VCHAR / obs-text) plus SP and HTAB: every byte a field value
# may hold.  Positive classes are markedly faster than negated ones in re.
_VALUE_CHARS = rb"[\t\x20-\x7e\x80-\xff]"
# qdtext* (quoted-pair qdtext*)*: the classic unrolled loop; qdtext
# excludes both '"' and "\\", so each run of it ends where the next piece
# must start.
_QDTEXT = rb"[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]*"
_QUOTED_STRING = rb'"' + _QDTEXT + rb"(?:\\[\t\x20-\x7e\x80-\xff]" + _QDTEXT + rb')*"'
# Each extension starts with [ \t]*";" and its optional value with
# [ \t]*"=": neither can start where the other (or the final CR) can.
_CHUNK_EXT = (
    rb"(?:[ \t]*;[ \t]*"
    + _TOKEN
    + rb"(?:[ \t]*=[ \t]*(?:"
    + _TOKEN
    + rb"|"
    + _QUOTED_STRING
    + rb"))?)*"
)

_TOKEN_RE = re.compile(_TOKEN)
_TARGET_RE = re.compile(rb"[\x21-\x7e\x80-\xff]+")
_REQUEST_LINE_RE = re.compile(
    rb"(" + _TOKEN + rb") ([\x21-\x7e\x80-\xff]+) (HTTP/1\.[01])\r?"
)
_STATUS_LINE_RE = re.compile(
    rb"(HTTP/1\.[01]) ([0-9]{3})(?: (" + _VALUE_CHARS + rb"*))?\r?"
)
_ANY_VERSION_RE = re.compile(rb"HTTP/[0-9]\.[0-9]")
_FIELD_LINE_RE = re.compile(_TOKEN + rb":" + _VALUE_CHARS + rb"*")
# The header section is checked with a few C-speed passes instead of a
# regex walking it byte by byte: deleting these bytes must leave nothing
# (no control byte but HTAB, CR and LF anywhere), every CR must start a
# CRLF, and the names joined must be all token bytes.  With the start line
# already matched and every line split at its first colon, that is
# exactly `token ":" field-value CRLF` per line, as _FIELD_LINE_RE says.
_HEAD_BYTES = bytes(b for b in range(256) if b in (9, 10, 13) or 32 <= b <= 126 or b >= 128)
_TOKEN_BYTES = bytes(b for b in range(256) if _TOKEN_RE.fullmatch(bytes([b])))
_ABSOLUTE_FORM_RE = re.compile(rb"[A-Za-z][A-Za-z0-9+.\-]*://")
_AUTHORITY_FORM_RE = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[^/?#@\[\]:]+):[0-9]+")
_BAD_HOST_RE = re.compile(rb"[ \t/\\?#@]")
_CHUNK_LINE_RE = re.compile(rb"([0-9A-Fa-f]+)(" + _CHUNK_EXT + rb")\r")
_HEX_RE = re.compile(rb"[0-9A-Fa-f]*")
# One regex search is twice as fast as finding "\n\r\n" then "\n\n".
_HEAD_END_RE = re.compile(rb"\n\r?\n")
_LINE_END_BYTES = (b"\r", b"\n")


class HTTPError(Exception):
    """
    A message the proxy must refuse, carrying the status to answer with
    (4xx/5xx for clients, 502 for a backend's bad response) and a reason
    meant for logs.

    @ivar status: the HTTP status code to respond with.
    @ivar reason: a short human-readable explanation.
    """

    def __init__(self, status: int, reason: str) -> None:
        """
        Keep the status and reason as attributes, and as args for pickling.
        """
        super().__init__(status, reason)
        self.status = status
        self.reason = reason

    def __str__(self) -> str:
        """
        Read like a status line, e.g. C{400 invalid Content-Length}.
        """
        return f"{self.status} {self.reason}"


@attr.s(slots=True, auto_attribs=True)
class Limits:
    """
    Size limits on a message head, so a peer cannot make the proxy buffer
    without bound (nginx's large_client_header_buffers in spirit).

    @ivar maxRequestLine: longest request (or status) line, excluding its
        line terminator.
    @ivar maxHeaderLine: longest header line, excluding its terminator.
    @ivar maxHeadersSize: bytes after the start line's text: its line
        terminator, every header line and the final empty line.
    @ivar maxHeaderCount: most header lines.
    """

    maxRequestLine: int = 8192
    maxHeaderLine: int = 8192
    maxHeadersSize: int = 32768
    maxHeaderCount: int = 100


@attr.s(slots=True, auto_attribs=True)
class RequestHead:
    """
    A parsed request line and header section.

    @ivar method: the method, case preserved (methods are case-sensitive).
    @ivar target: the request-target exactly as sent.
    @ivar version: C{b"HTTP/1.1"} or C{b"HTTP/1.0"}.
    @ivar headers: C{(name as sent, value without surrounding whitespace)}
        in the order received.
    """

    method: bytes
    target: bytes
    version: bytes
    headers: Headers
    framing: Optional["Framing"] = attr.ib(default=None, eq=False, repr=False)
    """How the body is delimited, found while parsing (L{requestFraming})."""
    lowers: Optional[List[bytes]] = attr.ib(default=None, eq=False, repr=False)
    """The lowercased names of C{headers}, in order, lowered once by the
    parser so later passes look names up in C (L{headerLowers})."""


@attr.s(slots=True, auto_attribs=True)
class ResponseHead:
    """
    A parsed status line and header section from a backend.

    @ivar version: C{b"HTTP/1.1"} or C{b"HTTP/1.0"}.
    @ivar status: the status code, 100 to 599.
    @ivar reason: the reason phrase as sent, possibly empty.
    @ivar headers: as for L{RequestHead.headers}.
    """

    version: bytes
    status: int
    reason: bytes
    headers: Headers
    framing: Optional["Framing"] = attr.ib(default=None, eq=False, repr=False)
    """How the body is delimited by the headers alone, found while parsing
    (L{responseFraming} then applies the method and status)."""
    lowers: Optional[List[bytes]] = attr.ib(default=None, eq=False, repr=False)
    """As for L{RequestHead.lowers}."""


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Framing:
    """
    How a message body is delimited (RFC 9112 section 6.3).

    @ivar kind: C{"none"} (no body), C{"length"} (exactly C{length} bytes),
        C{"chunked"} (use L{ChunkedDecoder}) or C{"eof"} (a response body
        that ends when the backend closes the connection).
    @ivar length: the body size when C{kind} is C{"length"}, else 0.
    """

    kind: str
    length: int = 0


# Shared, never changed: most messages are framed one of these ways.
_NO_BODY = Framing("none")
_CHUNKED = Framing("chunked")
_TO_EOF = Framing("eof")


def findHeadEnd(buffer: Union[bytes, bytearray], start: int = 0) -> int:
    """
    Find where a message head ends, so the caller knows when to parse.

    The head ends with an empty line; like nginx, a bare LF is accepted in
    place of CRLF.  Empty lines before the start line do not end anything
    (RFC 9112 section 2.2).

    @param start: where to resume searching; after appending to a buffer
        already searched, C{len(oldBuffer) - 2} avoids rescanning it.
    @return: the index just past the empty line, or -1 if it has not
        arrived yet.
    """
    begin = start
    if buffer[:1] in _LINE_END_BYTES:
        begin = max(start, _skipEmptyLines(buffer))
    match = _HEAD_END_RE.search(buffer, begin)
    return -1 if match is None else match.end()


def checkIncompleteHead(
    buffer: Union[bytes, bytearray], limits: Limits, isRequest: bool = True
) -> None:
    """
    Refuse a head that is still incomplete but already breaks a limit, so
    an endless start line or header section is cut off early.

    For a backend's response (C{isRequest=False}) every violation is a 502,
    as nginx's "upstream sent too big header".

    @raise HTTPError: 414 for a too long request line, 431 for a too long
        header line, too many header lines or too many bytes in all.
    """
    begin = _skipEmptyLines(buffer) if isRequest else 0
    lineEnd = buffer.find(b"\n", begin)
    firstLineEnd = len(buffer) if lineEnd < 0 else lineEnd
    if _textLength(buffer, begin, firstLineEnd) > limits.maxRequestLine:
        raise _startLineTooLong(isRequest)
    if len(buffer) > limits.maxRequestLine + limits.maxHeadersSize:
        raise _headTooLarge(isRequest, "header section too large")
    if lineEnd < 0:
        return
    if (
        len(buffer) - begin - _textLength(buffer, begin, lineEnd)
        > limits.maxHeadersSize
    ):
        raise _headTooLarge(isRequest, "header section too large")
    lines = buffer[lineEnd + 1 :].split(b"\n")
    if len(lines) - 1 > limits.maxHeaderCount:
        raise _headTooLarge(isRequest, "too many header lines")
    if max(map(len, lines)) > limits.maxHeaderLine:
        _checkLineLengths(lines, limits.maxHeaderLine, 431 if isRequest else 502)


def parseRequestHead(head: bytes, limits: Limits) -> RequestHead:
    """
    Parse and validate a client's request head.

    Besides syntax this enforces RFC 9112's message-level rules (Host
    presence and uniqueness, Content-Length/Transfer-Encoding consistency),
    so a head that parses can be framed without ambiguity.

    @param head: the bytes up to and including the empty line, as delimited
        by L{findHeadEnd}; leading empty lines are skipped.
    @raise HTTPError: 400, 414, 431, 501 or 505 as RFC 9112 and nginx do.
    """
    if len(head) > limits.maxRequestLine + limits.maxHeadersSize:
        raise HTTPError(431, "request header section too large")
    if head[:1] in _LINE_END_BYTES:
        head = head[_skipEmptyLines(head) :]
    lines = head.split(b"\n")
    if len(lines) < 3 or lines[-1] or (lines[-2] and lines[-2] != b"\r"):
        _checkHeadEnding(lines, 400)
    requestLine = lines[0]
    if len(requestLine) > limits.maxRequestLine:
        if _textLength(requestLine, 0, len(requestLine)) > limits.maxRequestLine:
            raise HTTPError(414, "request line too long")
    match = _REQUEST_LINE_RE.fullmatch(requestLine)
    if match is None:
        raise _requestLineError(requestLine)
    method, target, version = match.groups()
    if target[0] != _SLASH:
        _checkTargetForm(method, target)
    headers, lowers = _parseFields(head, lines, limits, True)
    hosts, lengths, codings = _framingFields(headers, lowers)
    _checkHost(version, hosts)
    framing = _requestFraming(version, lengths, codings) if lengths or codings else _NO_BODY
    return RequestHead(method, target, version, headers, framing, lowers)


def parseResponseHead(head: bytes, limits: Limits) -> ResponseHead:
    """
    Parse and validate a backend's response head.

    Reason phrases are taken as sent (any visible characters, possibly
    empty) since clients ignore them, but anything that affects framing
    or could be relayed unsafely is refused.

    @param head: the bytes up to and including the empty line.
    @raise HTTPError: always 502, the backend being at fault.
    """
    if len(head) > limits.maxRequestLine + limits.maxHeadersSize:
        raise HTTPError(502, "upstream sent too big header")
    lines = head.split(b"\n")
    if len(lines) < 3 or lines[-1] or (lines[-2] and lines[-2] != b"\r"):
        _checkHeadEnding(lines, 502)
    statusLine = lines[0]
    if len(statusLine) > limits.maxRequestLine:
        if _textLength(statusLine, 0, len(statusLine)) > limits.maxRequestLine:
            raise HTTPError(502, "upstream sent too long status line")
    match = _STATUS_LINE_RE.fullmatch(statusLine)
    if match is None:
        raise _statusLineError(statusLine)
    version, code, reason = match.groups()
    status = int(code)
    if status < 100 or status > 599:
        raise HTTPError(502, "upstream sent invalid status code")
    headers, lowers = _parseFields(head, lines, limits, False)
    _, lengths, codings = _framingFields(headers, lowers)
    framing = _responseBodyFraming(version, lengths, codings) if lengths or codings else _TO_EOF
    return ResponseHead(version, status, reason or b"", headers, framing, lowers)


def requestFraming(head: RequestHead) -> Framing:
    """
    Say how the request body is delimited: chunked, a Content-Length
    (possibly 0) or no body at all (a request is never close-delimited).

    @raise HTTPError: 400 or 501 on conflicting or unsupported framing.
    """
    if head.framing is not None:
        return head.framing
    _, lengths, codings = _framingFields(head.headers, headerLowers(head))
    return _requestFraming(head.version, lengths, codings)


def responseFraming(requestMethod: bytes, head: ResponseHead) -> Framing:
    """
    Say how a response body is delimited, which depends on the request:
    responses to HEAD, 1xx, 204, 304 and 2xx to CONNECT have no body
    whatever their headers say (RFC 9112 section 6.3).

    A final transfer coding other than chunked means the body runs to
    connection close; the codings themselves are left to the caller.

    @raise HTTPError: 502 on conflicting or malformed framing headers.
    """
    framing = head.framing
    if framing is None:
        _, lengths, codings = _framingFields(head.headers, headerLowers(head))
        framing = _responseBodyFraming(head.version, lengths, codings)
    status = head.status
    if (
        requestMethod == b"HEAD"
        or status < 200
        or status == 204
        or status == 304
        or (requestMethod == b"CONNECT" and status < 300)
    ):
        return _NO_BODY
    return framing


def headerValue(
    headers: Sequence[Tuple[bytes, bytes]], lowerName: bytes
) -> Optional[bytes]:
    """
    Return the first value of a header, matching names case-insensitively
    as RFC 9110 requires, or C{None} when absent.

    @param lowerName: the name in lower case.
    """
    size = len(lowerName)
    for name, value in headers:
        if len(name) == size and name.lower() == lowerName:
            return value
    return None


# States of a ChunkedDecoder, as ints for cheap comparisons.
_SIZE = 0
_DATA = 1
_DATA_END = 2
_TRAILER = 3
_DONE = 4
_FAILED = 5


class ChunkedDecoder:
    """
    Incrementally decode a chunked body (RFC 9112 section 7.1), strictly:
    CRLF everywhere, hex sizes only, well-formed extensions and trailers.

    Chunk extensions and trailers are not counted as body bytes, so a
    separate budget keeps a peer from streaming them forever.

    @ivar trailers: the trailer fields received, once done; they are
        validated but the caller decides whether to use them.
    """

    __slots__ = (
        "_state",
        "_remaining",
        "_partial",
        "_budget",
        "_sawCR",
        "_error",
        "trailers",
    )

    def __init__(self, maxChunkExtensionsAndTrailers: int = 8192) -> None:
        """
        Start before the first chunk-size line.

        @param maxChunkExtensionsAndTrailers: total bytes allowed for chunk
            extensions (and size digits beyond 16) plus trailer lines.
        """
        self._state = _SIZE
        self._remaining = 0
        self._partial = b""
        self._budget = maxChunkExtensionsAndTrailers
        self._sawCR = False
        self._error: Optional[HTTPError] = None
        self.trailers: Headers = []

    def feed(self, data: bytes) -> Tuple[List[bytes], bool, bytes]:
        """
        Decode the next bytes of the body, which may be split anywhere.

        @return: the decoded data (slices of C{data}, or C{data} itself
            when it is all chunk data), whether the body is complete, and
            the bytes after its end (the next message), if complete.
        @raise HTTPError: 400 on malformed input; again on every later call.
        """
        state = self._state
        if state == _DONE:
            return [], True, data
        if state == _FAILED:
            assert self._error is not None
            raise HTTPError(self._error.status, self._error.reason)
        pieces: List[bytes] = []
        try:
            pos = self._decode(data, pieces)
        except HTTPError as error:
            self._state = _FAILED
            self._error = error
            raise
        if pos < 0:
            return pieces, False, b""
        return pieces, True, data[pos:]

    def _decode(self, data: bytes, pieces: List[bytes]) -> int:
        """
        Run the state machine over C{data}, appending decoded data.

        @return: the index just past the body's end, or -1 if not reached.
        """
        pos = 0
        end = len(data)
        while pos < end:
            state = self._state
            if state == _DATA:
                stop = pos + self._remaining
                if stop >= end:
                    pieces.append(data if pos == 0 else data[pos:])
                    self._remaining = stop - end
                    if stop == end:
                        self._state = _DATA_END
                    return -1
                pieces.append(data[pos:stop])
                self._remaining = 0
                self._state = _DATA_END
                pos = stop
            elif state == _DATA_END:
                pos = self._dataEnd(data, pos, end)
            else:
                lineEnd = data.find(b"\n", pos)
                if lineEnd < 0:
                    self._keepPartial(data[pos:])
                    return -1
                line = data[pos:lineEnd]
                if self._partial:
                    line = self._partial + line
                    self._partial = b""
                pos = lineEnd + 1
                if state == _SIZE:
                    self._sizeLine(line)
                elif self._trailerLine(line):
                    self._state = _DONE
                    return pos
        return -1

    def _dataEnd(self, data: bytes, pos: int, end: int) -> int:
        """
        Consume the CRLF that must follow chunk data, possibly split.
        """
        if not self._sawCR:
            if data[pos] != _CR:
                raise HTTPError(400, "chunk data not followed by CRLF")
            pos += 1
            if pos == end:
                self._sawCR = True
                return pos
        if data[pos] != _LF:
            raise HTTPError(400, "chunk data not followed by CRLF")
        self._sawCR = False
        self._state = _SIZE
        return pos + 1

    def _keepPartial(self, tail: bytes) -> None:
        """
        Remember an incomplete size or trailer line, bounded by the budget
        so an endless line cannot grow memory.
        """
        partial = self._partial + tail if self._partial else tail
        # A size line may also hold 16 hex digits and its CR for free.
        allowance = self._budget + (17 if self._state == _SIZE else 1)
        if len(partial) > allowance:
            raise HTTPError(400, "chunk extensions and trailers too long")
        self._partial = partial

    def _spend(self, size: int) -> None:
        """
        Charge extension or trailer bytes against the budget.
        """
        self._budget -= size
        if self._budget < 0:
            raise HTTPError(400, "chunk extensions and trailers too long")

    def _sizeLine(self, line: bytes) -> None:
        """
        Parse C{chunk-size [chunk-ext] CR} and move to the data or, for the
        last chunk, the trailer section.
        """
        match = _CHUNK_LINE_RE.fullmatch(line)
        if match is None:
            raise HTTPError(400, _chunkLineProblem(line))
        digits, extensions = match.groups()
        # Leading zeros past 16 digits cost like extension bytes.
        cost = len(extensions) + (len(digits) - 16 if len(digits) > 16 else 0)
        if cost:
            self._spend(cost)
        if len(digits) > 16:
            digits = digits.lstrip(b"0")
            if len(digits) > 16:
                raise HTTPError(400, "chunk size too large")
        size = int(digits, 16)
        if size > _MAX_SIZE:
            raise HTTPError(400, "chunk size too large")
        if size:
            self._remaining = size
            self._state = _DATA
        else:
            self._state = _TRAILER

    def _trailerLine(self, line: bytes) -> bool:
        """
        Validate and keep one trailer field line.

        @return: C{True} for the empty line that ends the body.
        """
        if line[-1:] != b"\r":
            raise HTTPError(400, "trailer line not terminated by CRLF")
        if len(line) == 1:
            return True
        self._spend(len(line) + 1)
        text = line[:-1]
        if _FIELD_LINE_RE.fullmatch(text) is None:
            raise HTTPError(400, "trailer: " + _fieldLineProblem(text))
        name, _, value = text.partition(b":")
        self.trailers.append((name, value.strip(b" \t")))
        return False


def _skipEmptyLines(buffer: Union[bytes, bytearray]) -> int:
    """
    Return the index of the first byte after any leading empty lines
    (CRLF or bare LF), which RFC 9112 section 2.2 says to ignore.
    """
    pos = 0
    size = len(buffer)
    while pos < size:
        byte = buffer[pos]
        if byte == _LF:
            pos += 1
        elif byte == _CR and pos + 1 < size and buffer[pos + 1] == _LF:
            pos += 2
        else:
            break
    return pos


def _textLength(buffer: Union[bytes, bytearray], start: int, end: int) -> int:
    """
    Return the length of the line C{buffer[start:end]} without the CR of
    its terminator.
    """
    if end > start and buffer[end - 1] == _CR:
        return end - start - 1
    return end - start


def _startLineTooLong(isRequest: bool) -> HTTPError:
    """
    Build the error for an overlong request or status line.
    """
    if isRequest:
        return HTTPError(414, "request line too long")
    return HTTPError(502, "upstream sent too long status line")


def _headTooLarge(isRequest: bool, what: str) -> HTTPError:
    """
    Build the error for a head over its size or count limits.
    """
    if isRequest:
        return HTTPError(431, what)
    return HTTPError(502, "upstream sent too big header: " + what)


def _checkLineLengths(
    lines: Sequence[Union[bytes, bytearray]], maxLength: int, status: int
) -> None:
    """
    Refuse any line longer than C{maxLength} once its CR is discounted.
    """
    for line in lines:
        if len(line) > maxLength and _textLength(line, 0, len(line)) > maxLength:
            if status == 431:
                raise HTTPError(431, "header line too long")
            raise HTTPError(status, "upstream sent too long header line")


def _checkHeadEnding(lines: List[bytes], status: int) -> None:
    """
    Make sure a head split on LF ends with an empty line, i.e. that it was
    delimited by L{findHeadEnd}.
    """
    if len(lines) < 3 or lines[-1] or (lines[-2] and lines[-2] != b"\r"):
        raise HTTPError(status, "header section not terminated by an empty line")


def _parseFields(
    head: bytes, lines: List[bytes], limits: Limits, isRequest: bool
) -> Tuple[Headers, List[bytes]]:
    """
    Validate the header section in one regex pass, then split each line
    into name and OWS-stripped value.

    @return: the C{(name, value)} pairs and their lowercased names.

    @param lines: C{head} split on LF: the start line, the field lines,
        the empty line and the empty string after it.
    @param isRequest: whether errors are the client's (4xx) or the
        backend's (502).
    """
    startLine = lines[0]  # matched by the start-line regex: not empty
    sectionSize = len(head) - len(startLine) + (startLine[-1] == _CR)
    if sectionSize > limits.maxHeadersSize:
        raise _headTooLarge(isRequest, "header section too large")
    fieldLines = lines[1:-2]
    if len(fieldLines) > limits.maxHeaderCount:
        raise _headTooLarge(isRequest, "too many header lines")
    if sectionSize > limits.maxHeaderLine:
        _checkLineLengths(fieldLines, limits.maxHeaderLine, 431 if isRequest else 502)
    if head.translate(None, _HEAD_BYTES) or head.count(b"\r") != head.count(b"\r\n"):
        raise _fieldsError(fieldLines, 400 if isRequest else 502)
    headers: Headers = []
    lowers: List[bytes] = []
    append = headers.append
    appendLower = lowers.append
    for line in fieldLines:
        name, colon, value = line.partition(b":")
        if not colon:
            raise _fieldsError(fieldLines, 400 if isRequest else 502)
        # The only CR a valid line holds is its terminator's.
        append((name, value.strip(b" \t\r")))
        appendLower(name.lower())
    if b"".join(lowers).translate(None, _TOKEN_BYTES) or b"" in lowers:
        raise _fieldsError(fieldLines, 400 if isRequest else 502)
    return headers, lowers


def _fieldsError(fieldLines: Sequence[bytes], status: int) -> HTTPError:
    """
    Explain why a header section failed validation, naming the first bad
    line's problem.
    """
    for line in fieldLines:
        if line[-1:] == b"\r":
            line = line[:-1]
        if _FIELD_LINE_RE.fullmatch(line) is None:
            problem = _fieldLineProblem(line)
            break
    else:
        # Not reached while the two regexes agree; still refuse if not.
        problem = "malformed header section"
    if status == 502:
        return HTTPError(502, "upstream sent invalid header: " + problem)
    return HTTPError(status, problem)


def _fieldLineProblem(line: bytes) -> str:
    """
    Describe what is wrong with a field line (without its CRLF) that is not
    C{token ":" field-value}.
    """
    if not line:
        return "empty line inside the header section"
    if line[0] in b" \t":
        return "obsolete line folding (obs-fold) is not allowed"
    name, colon, value = line.partition(b":")
    if not colon:
        return "header line without a colon"
    if not name:
        return "empty header name"
    if name[-1] in b" \t":
        return "whitespace between header name and colon"
    if _TOKEN_RE.fullmatch(name) is None:
        return "invalid character in header name"
    if b"\0" in value:
        return "NUL in header value"
    if b"\r" in value:
        return "CR in header value"
    return "control character in header value"


def _requestLineError(line: bytes) -> HTTPError:
    """
    Explain why a request line failed validation: 505 for a well-formed
    but unsupported version (HTTP/0.9's two-word form included), else 400.
    """
    if line[-1:] == b"\r":
        line = line[:-1]
    parts = line.split(b" ")
    if (
        len(parts) == 2
        and _TOKEN_RE.fullmatch(parts[0])
        and _TARGET_RE.fullmatch(parts[1])
    ):
        return HTTPError(505, "HTTP/0.9 requests are not supported")
    if len(parts) != 3:
        return HTTPError(400, "malformed request line")
    method, target, version = parts
    if _TOKEN_RE.fullmatch(method) is None:
        return HTTPError(400, "invalid method in request line")
    if _TARGET_RE.fullmatch(target) is None:
        return HTTPError(400, "invalid character in request target")
    if _ANY_VERSION_RE.fullmatch(version) is not None:
        return HTTPError(505, "HTTP version not supported")
    return HTTPError(400, "invalid HTTP version in request line")


def _statusLineError(line: bytes) -> HTTPError:
    """
    Explain why a backend's status line failed validation.
    """
    version = line[:8]
    if version not in (b"HTTP/1.0", b"HTTP/1.1") and _ANY_VERSION_RE.fullmatch(version):
        return HTTPError(502, "upstream sent unsupported HTTP version")
    return HTTPError(502, "upstream sent invalid status line")


def _checkTargetForm(method: bytes, target: bytes) -> None:
    """
    Accept the request-target forms other than origin-form: asterisk-form
    for OPTIONS, authority-form for CONNECT, absolute-form otherwise.
    """
    if method == b"CONNECT":
        if _AUTHORITY_FORM_RE.fullmatch(target) is not None:
            return
    elif target == b"*":
        if method == b"OPTIONS":
            return
    elif _ABSOLUTE_FORM_RE.match(target) is not None:
        return
    raise HTTPError(400, "invalid request target")


def _framingFields(
    headers: Sequence[Tuple[bytes, bytes]], lowers: List[bytes]
) -> Tuple[List[bytes], List[bytes], List[bytes]]:
    """
    Collect the Host, Content-Length and Transfer-Encoding values: three
    scans of the lowered names in C rather than a Python loop over the
    headers.
    """
    return (
        fieldValues(headers, lowers, b"host") if b"host" in lowers else [],
        fieldValues(headers, lowers, b"content-length") if b"content-length" in lowers else [],
        fieldValues(headers, lowers, b"transfer-encoding")
        if b"transfer-encoding" in lowers
        else [],
    )


def fieldValues(
    headers: Sequence[Tuple[bytes, bytes]], lowers: List[bytes], lowerName: bytes
) -> List[bytes]:
    """
    @param lowers: the lowercased names of C{headers}, in order.
    @return: every value of header C{lowerName}, in order: a field that is
        absent or present once (the usual cases) costs one or two scans
        of C{lowers} in C.
    """
    count = lowers.count(lowerName)
    if not count:
        return []
    if count == 1:
        return [headers[lowers.index(lowerName)][1]]
    return [pair[1] for lower, pair in zip(lowers, headers) if lower == lowerName]


def headerLowers(head: Union[RequestHead, ResponseHead]) -> List[bytes]:
    """
    @return: the lowercased header names of C{head}: the parser's, or
        lowered now for a head built some other way.
    """
    if head.lowers is not None:
        return head.lowers
    return [name.lower() for name, _value in head.headers]


def _checkHost(version: bytes, hosts: List[bytes]) -> None:
    """
    Enforce RFC 9112 section 3.2: exactly one valid Host in HTTP/1.1, at
    most one in HTTP/1.0.
    """
    if not hosts:
        if version == b"HTTP/1.1":
            raise HTTPError(400, "missing Host header in HTTP/1.1 request")
        return
    if len(hosts) > 1:
        raise HTTPError(400, "more than one Host header")
    if _BAD_HOST_RE.search(hosts[0]) is not None:
        raise HTTPError(400, "invalid Host header")


def _requestFraming(
    version: bytes, lengths: List[bytes], codings: List[bytes]
) -> Framing:
    """
    Frame a request body from its Content-Length and Transfer-Encoding
    values, refusing every combination RFC 9112 leaves ambiguous.
    """
    if codings:
        if version != b"HTTP/1.1":
            raise HTTPError(400, "Transfer-Encoding in an HTTP/1.0 request")
        if lengths:
            raise HTTPError(400, "both Content-Length and Transfer-Encoding")
        parsed = _transferCodings(codings, 400)
        for coding in parsed:
            if coding != b"chunked":
                raise HTTPError(
                    501, "unsupported transfer coding " + repr(coding[:64])[1:]
                )
        if len(parsed) > 1:
            raise HTTPError(400, "chunked transfer coding applied more than once")
        return _CHUNKED
    if lengths:
        return Framing("length", _contentLength(lengths, 400))
    return _NO_BODY


def _responseBodyFraming(
    version: bytes, lengths: List[bytes], codings: List[bytes]
) -> Framing:
    """
    Frame a response body from its headers alone, before the request
    method and status are taken into account; malformed framing is a 502.
    """
    if codings:
        if version != b"HTTP/1.1":
            raise HTTPError(
                502, "upstream sent Transfer-Encoding in an HTTP/1.0 response"
            )
        if lengths:
            raise HTTPError(
                502, "upstream sent both Content-Length and Transfer-Encoding"
            )
        parsed = _transferCodings(codings, 502)
        if parsed.count(b"chunked") > 1:
            raise HTTPError(
                502, "upstream applied chunked transfer coding more than once"
            )
        if parsed[-1] == b"chunked":
            return _CHUNKED
        return _TO_EOF
    if lengths:
        return Framing("length", _contentLength(lengths, 502))
    return _TO_EOF


def _contentLength(values: List[bytes], status: int) -> int:
    """
    Parse Content-Length field values, allowing identical repeats (as
    separate lines or a list, RFC 9110 section 8.6) but nothing else.
    """
    length = -1
    for value in values:
        # find(), not "in", which would build and drop a TypeError (it
        # tries a bytes operand as an int first).
        for item in value.split(b",") if value.find(b",") >= 0 else (value,):
            item = item.strip(b" \t")
            if not item.isdigit():
                raise _framingError(status, "invalid Content-Length")
            if len(item) > 19:
                item = item.lstrip(b"0")
                if len(item) > 19:
                    raise _framingError(status, "Content-Length too large")
            number = int(item)
            if number > _MAX_SIZE:
                raise _framingError(status, "Content-Length too large")
            if length >= 0 and number != length:
                raise _framingError(status, "conflicting Content-Length values")
            length = number
    return length


def _transferCodings(values: List[bytes], status: int) -> List[bytes]:
    """
    Split Transfer-Encoding field values, all lines together, into their
    lowercased codings; an empty coding is malformed.
    """
    codings = []
    for value in values:
        for item in value.split(b","):
            item = item.strip(b" \t").lower()
            if not item:
                raise _framingError(status, "empty Transfer-Encoding element")
            codings.append(item)
    return codings


def _framingError(status: int, problem: str) -> HTTPError:
    """
    Build a framing error, saying the backend is at fault for a 502.
    """
    if status == 502:
        return HTTPError(502, "upstream sent " + problem)
    return HTTPError(status, problem)


def _chunkLineProblem(line: bytes) -> str:
    """
    Describe what is wrong with a chunk-size line (up to, excluding, LF).
    """
    if line[-1:] != b"\r":
        return "chunk size line not terminated by CRLF"
    text = line[:-1]
    if not text:
        return "empty chunk size"
    if text[0] in b" \t":
        return "whitespace before chunk size"
    digits = _HEX_RE.match(text).end()  # type: ignore[union-attr]
    if digits == 0 or text[digits : digits + 1] not in (b" ", b"\t", b";"):
        return "invalid chunk size"
    if not text[digits:].strip(b" \t"):
        return "whitespace after chunk size"
    return "invalid chunk extension"
