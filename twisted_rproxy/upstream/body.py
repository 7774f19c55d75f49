# -*- test-case-name: tests.unit.test_proxy_request -*-
"""
A request body held for sending (and re-sending on retry): in memory up to
C{client_body_buffer_size}, then in an anonymous temporary file, as nginx's
request buffering does.
"""

from __future__ import annotations

import tempfile
from typing import IO, Iterator, List, Optional

READ_SIZE = 65536


class RequestBody:
    """
    Collects body pieces; L{pieces} replays them from the start.
    """

    def __init__(self, memoryLimit: int) -> None:
        self._memoryLimit = memoryLimit
        self._pieces: List[bytes] = []
        self._file: Optional[IO[bytes]] = None
        self.length = 0

    def append(self, data: bytes) -> None:
        """
        Keep C{data}, spilling everything to disk once over the limit.
        """
        self.length += len(data)
        if self._file is not None:
            self._file.write(data)
            return
        self._pieces.append(data)
        if self.length > self._memoryLimit:
            self._file = tempfile.TemporaryFile(prefix="rproxy-body-")
            for piece in self._pieces:
                self._file.write(piece)
            self._pieces = []

    @property
    def inFile(self) -> bool:
        """
        Whether the body has spilled to a temporary file.
        """
        return self._file is not None

    def pieces(self) -> Iterator[bytes]:
        """
        @return: the body from its start, in pieces of at most 64 KiB when
            read back from disk.
        """
        if self._file is None:
            yield from self._pieces
            return
        self._file.seek(0)
        while True:
            data = self._file.read(READ_SIZE)
            if not data:
                return
            yield data

    def close(self) -> None:
        """
        Drop the body (and its file).
        """
        if self._file is not None:
            self._file.close()
            self._file = None
        self._pieces = []
