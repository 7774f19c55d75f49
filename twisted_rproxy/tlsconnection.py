# -*- test-case-name: tests.unit.test_tlsconnection -*-
"""
OpenSSL connections whose reads and writes go through one buffer made once,
instead of a buffer made per call.

pyOpenSSL's C{recv} and C{bio_read} allocate a fresh C buffer of the size
asked for on every call (Twisted asks for 32 KiB, about four times per
proxied request), and C{send} and C{bio_write} pass the caller's bytes
through C{ffi.from_buffer}.  On CPython that is a malloc and a free.  On
PyPy each fresh buffer adds its size to the memory pressure that schedules
the next major collection, and those collections were the whole of TLS's
p99 (33 ms, against 3 ms without them).  And PyPy's C{from_buffer} moves
bytes still in the nursery out of it, into memory the collector does not
count towards its next major collection (a million 1 KiB calls grew a
process by 1 GB), so without the pressure that memory piled up.
L{ReusedBufferConnection} copies through one buffer instead.  On PyPy,
L{newConnection} adds the memory each connection holds in OpenSSL to that
pressure, so closed connections are still collected in step with how many
are made (without it, RSS under handshake load grew past 2 GB).

The four methods call the pyOpenSSL internals its own methods call
(C{_ssl}, C{_into_ssl}, C{_from_ssl}, C{_raise_ssl_error},
C{_handle_bio_errors}, the binding's C{SSL_read}/C{SSL_write}/C{BIO_read}/
C{BIO_write}).  Where a pyOpenSSL release lacks any of them,
L{newConnection} makes plain C{SSL.Connection}s.  The buffer is shared by
every connection, which is safe because TLS runs in the reactor thread and
each call is done with the buffer before it returns.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from OpenSSL import SSL
from twisted.logger import Logger

__all__ = ["BUFFER_SIZE", "CONNECTION_PRESSURE", "ReusedBufferConnection", "newConnection", "reusesBuffers"]

try:
    from OpenSSL._util import ffi as _ffi
    from OpenSSL._util import lib as _lib
except ImportError:  # pragma: no cover - a pyOpenSSL without the module
    _ffi = _lib = None

try:
    from __pypy__ import add_memory_pressure as _addMemoryPressure
except ImportError:
    _addMemoryPressure = None

#: Bytes in the shared buffer: a TLS record's plaintext is at most 16 KiB,
#: and Twisted reads 32 KiB and writes at most 64 KiB at a time.
BUFFER_SIZE: int = 65536

#: What one connection holds in OpenSSL until it is freed (the SSL object,
#: its memory BIOs and session, with record buffers released when empty),
#: as told to PyPy's collector.  Freeing a server connection returned
#: 33 KiB to malloc after a TLS 1.3 handshake and 22 KiB after TLS 1.2
#: (CPython, C{mallinfo2}; docs/benchmarks.md, 2026-12-04).  0 on CPython,
#: where reference counting frees a connection as soon as it closes.
CONNECTION_PRESSURE: int = 32768 if _addMemoryPressure is not None else 0

_log = Logger()

_buffer: Any = _ffi.new("char[]", BUFFER_SIZE) if _ffi is not None else None
_view: Any = _ffi.buffer(_buffer) if _ffi is not None else None

#: The instance attributes the methods use, which C{SSL.Connection.__init__}
#: sets; checked on the first connection made.
_INSTANCE_NEEDS = ("_ssl", "_into_ssl", "_from_ssl")


def _classSupports() -> bool:
    """
    @return: whether this pyOpenSSL has the methods and binding calls the
        buffer-reusing methods call.
    """
    if _lib is None:
        return False
    methods = ("_raise_ssl_error", "_handle_bio_errors")
    calls = ("SSL_read", "SSL_write", "BIO_read", "BIO_write")
    return all(hasattr(SSL.Connection, m) for m in methods) and all(hasattr(_lib, c) for c in calls)


class ReusedBufferConnection(SSL.Connection):
    """
    An C{SSL.Connection} whose C{recv}, C{bio_read}, C{send} and
    C{bio_write} copy through the module's one buffer.  They behave as
    pyOpenSSL's do, errors included; a C{send} or C{bio_write} of anything
    but C{bytes}, or of more than L{BUFFER_SIZE} bytes, goes to pyOpenSSL's.
    """

    def recv(self, bufsiz: int, flags: Optional[int] = None) -> bytes:
        """Read up to C{bufsiz} bytes of plaintext (pyOpenSSL's with flags)."""
        if flags is not None:
            return super().recv(bufsiz, flags)
        result = _lib.SSL_read(self._ssl, _buffer, bufsiz if bufsiz < BUFFER_SIZE else BUFFER_SIZE)
        self._raise_ssl_error(self._ssl, result)
        return _view[0:result]

    read = recv

    def bio_read(self, bufsiz: int) -> bytes:
        """Take up to C{bufsiz} bytes of ciphertext to send."""
        if self._from_ssl is None or not isinstance(bufsiz, int):
            return super().bio_read(bufsiz)
        result = _lib.BIO_read(self._from_ssl, _buffer, bufsiz if bufsiz < BUFFER_SIZE else BUFFER_SIZE)
        if result <= 0:
            self._handle_bio_errors(self._from_ssl, result)
        return _view[0:result]

    def send(self, buf: Any, flags: int = 0) -> int:
        """Encrypt C{buf}, or as much as one partial write takes."""
        if type(buf) is not bytes or len(buf) > BUFFER_SIZE:
            return super().send(buf, flags)
        size = len(buf)
        _buffer[0:size] = buf
        result = _lib.SSL_write(self._ssl, _buffer, size)
        self._raise_ssl_error(self._ssl, result)
        return result  # type: ignore[no-any-return]

    write = send

    def bio_write(self, buf: Any) -> int:
        """Hand OpenSSL the ciphertext C{buf} that was received."""
        if type(buf) is not bytes or len(buf) > BUFFER_SIZE or self._into_ssl is None:
            return super().bio_write(buf)
        size = len(buf)
        _buffer[0:size] = buf
        result = _lib.BIO_write(self._into_ssl, _buffer, size)
        if result <= 0:
            self._handle_bio_errors(self._into_ssl, result)
        return result  # type: ignore[no-any-return]


#: C{None} until the first connection shows whether instances have what
#: the methods use; then the class every connection is made of.
_connectionClass: Optional[Callable[..., SSL.Connection]] = None if _classSupports() else SSL.Connection


def newConnection(context: SSL.Context) -> SSL.Connection:
    """
    @return: a connection on C{context} with memory BIOs: a
        L{ReusedBufferConnection} where this pyOpenSSL allows it.
    """
    global _connectionClass
    if _connectionClass is None:
        connection: SSL.Connection = ReusedBufferConnection(context, None)
        if all(hasattr(connection, name) for name in _INSTANCE_NEEDS):
            _connectionClass = ReusedBufferConnection
        else:
            _log.warn("pyOpenSSL {version} lacks what TLS buffer reuse needs; using its own buffers",
                      version=getattr(SSL, "__version__", "?"))
            _connectionClass = SSL.Connection
            connection = SSL.Connection(context, None)
    else:
        connection = _connectionClass(context, None)
    if CONNECTION_PRESSURE:
        _addMemoryPressure(CONNECTION_PRESSURE)
    return connection


def reusesBuffers() -> bool:
    """
    @return: whether connections made now reuse the shared buffer (C{True}
        before the first one when this pyOpenSSL has what they need).
    """
    return _connectionClass is not SSL.Connection
