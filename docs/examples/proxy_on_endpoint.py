"""
Serve twisted_rproxy on any Twisted server endpoint, with a config built
in the program.

    python proxy_on_endpoint.py unix:/tmp/proxy.sock 127.0.0.1:8000
    python proxy_on_endpoint.py tcp:8080:interface=127.0.0.1 127.0.0.1:8000
"""

import sys

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import react

from twisted_rproxy.service import ProxyFactory, loadConfig

CONFIG = """
events {}

http {
    access_log off;

    server {
        location / {
            proxy_pass http://%(backend)s;
            proxy_set_header X-Served-Via endpoint;
        }
    }
}
"""


@inlineCallbacks
def main(reactor, endpoint, backend):
    """
    Compile the config, then listen with the proxy's protocol factory on
    C{endpoint} until the process is stopped.
    """
    config = loadConfig(text=CONFIG % {"backend": backend}, reactor=reactor)
    factory = ProxyFactory(config.listeners[0], reactor)
    port = yield serverFromString(reactor, endpoint).listen(factory)
    print("proxy listening on", port.getHost(), flush=True)
    yield Deferred()  # serve until the process is stopped


if __name__ == "__main__":
    react(main, sys.argv[1:])
