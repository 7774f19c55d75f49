"""
The balancing methods over real sockets: three real backends (each answers
with its own name), one twisted_rproxy process, and the split of 300
sequential requests for weighted round-robin, C{least_conn}, C{ip_hash} and
C{hash $arg_k}, so what the unit tests show of each balancer on a clock
holds for the proxy as it really runs.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections import Counter
from typing import Dict, Iterator, List

import pytest

from tests.integration.harness import (
    Backend,
    RproxyRunner,
    freePort,
    namedBackends,
    proxyConfig,
    request,
)

REQUESTS = 300
"""How many requests each method gets."""

DEADLINE = 15.0
"""How long any awaited event may take before the test fails."""


@pytest.fixture(scope="module")
def backends() -> Iterator[List[Backend]]:
    """
    Three backends called a, b and c.
    """
    with namedBackends("abc") as started:
        yield started


@pytest.fixture
def proxy(backends: List[Backend], rproxyRunner: object) -> RproxyRunner:
    """
    A proxy with one upstream group per method over the three backends,
    each under its own location prefix (stripped before the backend).
    """
    a, b, c = (backend.address for backend in backends)
    groups = f"""
    upstream weighted {{
        server {a} weight=3;
        server {b};
        server {c};
    }}
    upstream leastconn {{
        least_conn;
        server {a};
        server {b};
        server {c};
    }}
    upstream iphash {{
        ip_hash;
        server {a};
        server {b};
        server {c};
    }}
    upstream byarg {{
        hash $arg_k;
        server {a};
        server {b};
        server {c};
    }}"""
    locations = "\n".join(
        f"        location /{name}/ {{ proxy_pass http://{name}/; }}"
        for name in ("weighted", "leastconn", "iphash", "byarg")
    )
    return rproxyRunner(proxyConfig(freePort(), locations, groups))  # type: ignore[operator]


def nameOf(proxy: RproxyRunner, path: str) -> str:
    """
    @return: the name of the backend that answered C{GET path}.
    """
    response = request(proxy.port, path=path)
    assert response.status == 200, (path, response)
    return response.json()["name"]


def split(proxy: RproxyRunner, paths: List[str]) -> Dict[str, int]:
    """
    @return: how many of the requests each backend answered.
    """
    return dict(Counter(nameOf(proxy, path) for path in paths))


def testWeightedRoundRobin(proxy: RproxyRunner) -> None:
    """
    Weights 3, 1, 1 split 300 requests exactly 180, 60, 60.
    """
    assert split(proxy, ["/weighted/"] * REQUESTS) == {"a": 180, "b": 60, "c": 60}


def testLeastConnIdleSplitsEvenly(proxy: RproxyRunner) -> None:
    """
    Sequential requests leave every peer idle, so least_conn's round-robin
    tie-break shares them evenly.
    """
    counts = split(proxy, ["/leastconn/"] * REQUESTS)
    assert counts == {"a": 100, "b": 100, "c": 100}


def testLeastConnAvoidsABusyPeer(proxy: RproxyRunner, backends: List[Backend]) -> None:
    """
    While one request is held open on a peer, least_conn sends every other
    request to the two idle peers.
    """
    key = f"lc-{time.monotonic_ns()}"
    held: Dict[str, object] = {}

    def hold() -> None:
        held["response"] = request(proxy.port, path=f"/leastconn/hold?key={key}", timeout=DEADLINE)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        deadline = time.monotonic() + DEADLINE
        busy = None
        while busy is None:
            for backend in backends:
                if request(backend.port, path=f"/holding?key={key}").status == 200:
                    busy = backend.name
            assert time.monotonic() < deadline, "the held request never reached a backend"
            time.sleep(0.02)
        counts = split(proxy, ["/leastconn/"] * 60)
        assert busy not in counts
        assert sorted(counts.values()) == [30, 30]
    finally:
        for backend in backends:
            request(backend.port, path=f"/trigger?key={key}")
        thread.join(DEADLINE)
    assert held["response"].status == 200  # type: ignore[attr-defined]


def testIPHashKeepsOneClientOnOnePeer(proxy: RproxyRunner) -> None:
    """
    Every request comes from 127.0.0.1, so ip_hash sends all to one peer.
    """
    counts = split(proxy, ["/iphash/"] * REQUESTS)
    assert list(counts.values()) == [REQUESTS]


def testHashByArgument(proxy: RproxyRunner) -> None:
    """
    C{hash $arg_k}: each key goes to nginx's peer for it,
    C{((crc32(k) >> 16) & 0x7fff) % 3}, every time, and 300 keys spread
    over all three.
    """
    keys = [f"user{i}" for i in range(REQUESTS // 2)] * 2
    got = [nameOf(proxy, f"/byarg/?k={k}") for k in keys]
    expected = ["abc"[((zlib.crc32(k.encode()) >> 16) & 0x7FFF) % 3] for k in keys]
    assert got == expected
    counts = Counter(got)
    assert set(counts) == {"a", "b", "c"}
    assert all(60 <= n <= 140 for n in counts.values()), counts
