"""
Long-lived streams (issue 6) over real sockets: server-sent events with
C{proxy_buffering off} through C{python -m twisted_rproxy} in front of the
test backend.  Delivery is proved by ordering (the backend sends the next
event only after the client got the previous one through the proxy), never
by timing; the gaps seen are printed as information only.
"""

from __future__ import annotations

import time

from tests.integration.harness import Backend, request
from tests.integration.test_proxy import (
    RawClient,
    RunnerFactory,
    header,
    startProxy,
    uniqueKey,
)

UNBUFFERED = """
    location / {{
        proxy_buffering off;
        proxy_read_timeout {timeout};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass http://{backend};
    }}"""


def testEventsArriveOneByOne(backend: Backend, rproxyRunner: RunnerFactory) -> None:
    """
    Twenty events, each released by the client only once it has read the
    one before through the proxy: no buffering could deliver them, so each
    event reached the client when the backend wrote it.
    """
    proxy = startProxy(rproxyRunner, UNBUFFERED.format(timeout="60s", backend=backend.address))
    key = uniqueKey("sse-ordered")
    client = RawClient(proxy.port)
    gaps = []
    try:
        client.get(f"/sse-gated?key={key}&n=20")
        status, headers = client.readHead()
        assert (status, header(headers, "content-type")) == (200, "text/event-stream")
        client.readUntil(b"data: 0\n\n")
        for i in range(1, 20):
            started = time.monotonic()
            assert request(backend.port, path=f"/trigger?key={key}").status == 200
            client.readUntil(b"data: %d\n\n" % i)
            gaps.append(time.monotonic() - started)
        client.readUntil(b"0\r\n\r\n")
    finally:
        client.close()
    print(f"trigger-to-event through the proxy: max {max(gaps) * 1000:.1f} ms, "
          f"mean {sum(gaps) / len(gaps) * 1000:.1f} ms (information only)")


def testReadTimeoutIsBetweenEvents(backend: Backend, rproxyRunner: RunnerFactory) -> None:
    """
    With C{proxy_read_timeout 2s}, a stream of 16 events 0.25 s apart
    (4 s in all, twice the timeout) arrives whole, its last chunk
    included; a backend silent for longer than the timeout mid-stream is
    cut off (the unit tests show the same on a fake clock).
    """
    proxy = startProxy(rproxyRunner, UNBUFFERED.format(timeout="2s", backend=backend.address))
    client = RawClient(proxy.port)
    started = time.monotonic()
    try:
        client.get("/sse?n=16&interval=0.25")
        status, _ = client.readHead()
        assert status == 200
        body = client.readUntil(b"0\r\n\r\n")
    finally:
        client.close()
    elapsed = time.monotonic() - started
    for i in range(16):
        assert b"data: %d\n\n" % i in body
    assert elapsed > 2, "the stream did not outlast the timeout, so it proves nothing"

    key = uniqueKey("sse-stalled")
    client = RawClient(proxy.port)
    try:
        client.get(f"/sse-gated?key={key}&n=3")
        client.readHead()
        client.readUntil(b"data: 0\n\n")
        rest = client.readToClose()
    finally:
        client.close()
    assert b"data: 1" not in rest and not rest.endswith(b"0\r\n\r\n")
