# -*- test-case-name: tests.unit.test_channel -*-
"""
The request phases filters run in (nginx's phase engine, Envoy's decoder
filter chain) and the value a filter returns to answer on its own.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import attr

POST_READ = "post_read"  # realip
SERVER_REWRITE = "server_rewrite"  # server-level return/rewrite
REWRITE = "rewrite"  # location-level return/rewrite
PREACCESS = "preaccess"  # limit_req, limit_conn
ACCESS = "access"  # allow/deny, auth
PRECONTENT = "precontent"  # try_files, mirror

#: Phases that run before a location is chosen, at server level.
SERVER_PHASES = (POST_READ, SERVER_REWRITE)
#: Phases that run once the location is known, in order.
LOCATION_PHASES = (REWRITE, PREACCESS, ACCESS, PRECONTENT)
PHASES = SERVER_PHASES + LOCATION_PHASES


@attr.s(frozen=True, slots=True, auto_attribs=True)
class LocalReply:
    """
    A filter's answer in place of the content handler, like Envoy's
    C{sendLocalReply}: a status, a body and extra headers.
    """

    status: int
    body: bytes = b""
    headers: Sequence[Tuple[bytes, bytes]] = ()


def phaseIndex(phase: str) -> int:
    """
    @return: the run order of C{phase}, for sorting filters.
    """
    return PHASES.index(phase)
