"""
Proxy part of an existing twisted.web site: /api/ goes to a backend, as
`location /api/ { ... }` would, and everything else is served by the site.

    python web_resource.py tcp:8080:interface=127.0.0.1 127.0.0.1:8000
"""

import sys

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import react
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from twisted_rproxy.web import LocationResource


@inlineCallbacks
def main(reactor, endpoint, backend):
    """
    Serve a site whose /api/ is proxied to C{backend}.
    """
    root = Resource()
    root.putChild(b"", Data(b"the site's own home page\n", "text/plain"))
    root.putChild(b"api", LocationResource(
        f"""
        proxy_pass http://{backend}/;
        proxy_set_header X-Served-Via twisted.web;
        """,
        prefix="/api/",
        reactor=reactor,
    ))
    port = yield serverFromString(reactor, endpoint).listen(Site(root))
    print("site listening on", port.getHost(), flush=True)
    yield Deferred()  # serve until the process is stopped


if __name__ == "__main__":
    react(main, sys.argv[1:])
