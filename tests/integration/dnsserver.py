"""
A real DNS server for integration tests, built on twisted.names.server,
whose answers a test changes while it runs.

Run as a subprocess::

    python -m tests.integration.dnsserver --records PATH [--ttl N]

It serves UDP and TCP on 127.0.0.1 (one free port), prints
C{LISTENING <port>} once bound, and answers A queries from the JSON file
C{PATH} (C{{"name": ["ip", ...]}}), read again for every query so a test
changes the answers by rewriting the file.  A name missing from the file
is NXDOMAIN; a known name has no AAAA records.  Each query is counted in
C{PATH.queries} (one line per query: C{TYPE name}), so a test can see
that the proxy really asked again.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, List, Optional

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.names import dns, server
from twisted.names.error import DomainError


class FileResolver:
    """
    Answers from the records file, as it is at the time of each query.
    """

    def __init__(self, path: str, ttl: int) -> None:
        self.path = path
        self.ttl = ttl

    def query(self, query: dns.Query, timeout: Any = None) -> Deferred:
        """
        Answer one question (the C{IResolver} method DNSServerFactory
        calls).
        """
        name = query.name.name.decode("ascii").lower()
        with open(self.path + ".queries", "a", encoding="ascii") as log:
            log.write(f"{dns.QUERY_TYPES.get(query.type, query.type)} {name}\n")
        with open(self.path, encoding="utf-8") as f:
            records = json.load(f)
        if name not in records:
            return fail(DomainError(name))
        answers: List[dns.RRHeader] = []
        if query.type == dns.A:
            answers = [
                dns.RRHeader(name, dns.A, dns.IN, self.ttl, dns.Record_A(ip, self.ttl))
                for ip in records[name]
            ]
        return succeed((answers, [], []))


def main(argv: Optional[List[str]] = None) -> int:
    """Bind UDP and TCP on one port, announce it, and serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--records", required=True)
    parser.add_argument("--ttl", type=int, default=1)
    options = parser.parse_args(argv)
    factory = server.DNSServerFactory(clients=[FileResolver(options.records, options.ttl)])
    protocol = dns.DNSDatagramProtocol(factory)
    # One port for both: bind UDP first, then TCP on the same number.
    udp = reactor.listenUDP(0, protocol, interface="127.0.0.1")
    port = udp.getHost().port
    try:
        reactor.listenTCP(port, factory, interface="127.0.0.1")
    except Exception:
        pass  # UDP is what the proxy asks over; TCP is only for truncation.
    sys.stdout.write("LISTENING %d\n" % (port,))
    sys.stdout.flush()
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
