"""
Real sockets for unit tests that need what only the kernel knows (socket
options).
"""

from __future__ import annotations

import socket

from twisted.trial.unittest import SynchronousTestCase


def acceptedTCP(case: SynchronousTestCase) -> socket.socket:
    """
    @return: the server end of a fresh TCP connection on 127.0.0.1, as
        C{accept} gave it; it, its client and the listener are closed when
        C{case} ends.
    """
    listening = socket.socket()
    case.addCleanup(listening.close)
    listening.bind(("127.0.0.1", 0))
    listening.listen(1)
    client = socket.create_connection(listening.getsockname())
    case.addCleanup(client.close)
    ours, _ = listening.accept()
    case.addCleanup(ours.close)
    return ours
