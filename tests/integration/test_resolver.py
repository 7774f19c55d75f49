"""
C{resolver} with C{server NAME resolve} over real sockets: a real DNS
server (twisted.names, tests/integration/dnsserver.py) whose answer the
test changes while twisted_rproxy runs, and two real backends on two
loopback addresses, so the peer set is seen to follow DNS by which
backend answers.
"""

from __future__ import annotations

from typing import Any, Iterator, Tuple

import pytest

from tests.integration.harness import (
    Backend,
    DNSServer,
    RproxyRunner,
    freePort,
    proxyConfig,
    request,
    waitUntil,
)


@pytest.fixture
def world() -> Iterator[Tuple[DNSServer, Backend, Backend]]:
    """
    A DNS server saying C{backend.test} is 127.0.0.2, and backends C{a}
    on 127.0.0.2 and C{b} on 127.0.0.3, both on one port.
    """
    with DNSServer({"backend.test": ["127.0.0.2"]}) as dns:
        with Backend("a", host="127.0.0.2") as a:
            with Backend("b", host="127.0.0.3", port=a.port) as b:
                yield dns, a, b


def answeredBy(proxy: RproxyRunner) -> str:
    """
    @return: the name of the backend that answered one request, or the
        status when none did.
    """
    response = request(proxy.port, path="/who")
    if response.status != 200:
        return str(response.status)
    return str(response.json()["name"])


def testPeersFollowDNS(world: Tuple[DNSServer, Backend, Backend], rproxyRunner: Any) -> None:
    """
    Requests go to the address DNS gives; when the answer changes (after
    C{valid=1s}) they go to the new one, then to both, and a name that no
    longer exists leaves the group with no peer (502).  Each change is
    seen by polling for it; once seen it holds for every later request.
    """
    dns, a, b = world
    config = proxyConfig(
        freePort(),
        "location / { proxy_pass http://u; }",
        f"""
    resolver 127.0.0.1:{dns.port} valid=1s ipv6=off;
    upstream u {{
        zone u 64k;
        server backend.test:{a.port} resolve;
    }}""",
    )
    proxy = rproxyRunner(config)
    waitUntil(lambda: answeredBy(proxy) == "a", "the first answer")
    assert {answeredBy(proxy) for _ in range(10)} == {"a"}

    dns.setRecords({"backend.test": ["127.0.0.3"]})
    waitUntil(lambda: answeredBy(proxy) == "b", "the changed answer")
    assert {answeredBy(proxy) for _ in range(10)} == {"b"}

    dns.setRecords({"backend.test": ["127.0.0.2", "127.0.0.3"]})
    waitUntil(lambda: answeredBy(proxy) == "a", "the two-address answer")
    assert {answeredBy(proxy) for _ in range(10)} == {"a", "b"}

    dns.setRecords({})
    waitUntil(lambda: answeredBy(proxy) == "502", "the name to vanish")
    assert {answeredBy(proxy) for _ in range(5)} == {"502"}
    assert len([q for q in dns.queries() if q == "A backend.test"]) >= 4


def testWithoutResolveTheNameIsResolvedAtLoad(
    world: Tuple[DNSServer, Backend, Backend], rproxyRunner: Any
) -> None:
    """
    A server line without C{resolve} is resolved once at load, by the
    system (C{localhost}), never through the C{resolver}: requests reach
    it and the DNS server is never asked.
    """
    dns, _a, _b = world
    with Backend("c") as c:
        config = proxyConfig(
            freePort(),
            "location / { proxy_pass http://u; }",
            f"""
    resolver 127.0.0.1:{dns.port} valid=1s;
    upstream u {{ zone u 64k; server localhost:{c.port}; }}""",
        )
        proxy = rproxyRunner(config)
        assert {answeredBy(proxy) for _ in range(5)} == {"c"}
    assert dns.queries() == []
