"""
An example twisted_rproxy plugin: the directive C{x_request_id on|off;}
gives each request a unique id, provides it as the variable
C{$x_request_id}, and sends it back to the client in an C{X-Request-ID}
response header.

twisted_rproxy loads every C{IProxyModule} found in the C{twisted.plugins}
package. So this file is picked up when the directory holding
C{twisted/plugins/} is on C{sys.path} (PYTHONPATH=docs/examples), or when it
is copied into an installed C{twisted/plugins/} directory. Neither
C{twisted/} nor C{twisted/plugins/} may contain an C{__init__.py}.
"""

import os

from zope.interface import implementer

from twisted_rproxy.config.registry import HTTP, LOCATION, SERVER, spec
from twisted_rproxy.config.slots import flagSlot
from twisted_rproxy.interfaces import IResponseFilter
from twisted_rproxy.module import ProxyModule
from twisted_rproxy.variables import simple


def requestId(exchange):
    """
    The variable's getter: this request's id, made on first use and then
    kept on the exchange, so that every use in one request (a header to the
    backend, the response header, the access log) gives the same id.

    @return: 32 hexadecimal digits.
    """
    found = getattr(exchange, "exampleRequestId", None)
    if found is None:
        found = exchange.exampleRequestId = os.urandom(16).hex()
    return found


@implementer(IResponseFilter)
class RequestIdHeader:
    """
    A response filter adding C{X-Request-ID} to every response of a
    location, whatever its status.
    """

    def responseHeaders(self, exchange, status, headers):
        """
        @return: the headers, plus ours.
        """
        headers.append((b"X-Request-ID", requestId(exchange).encode("ascii")))
        return headers


class RequestIdModule(ProxyModule):
    """
    Declares C{x_request_id} and C{$x_request_id}, and adds the response
    filter to the locations where the directive is on.
    """

    name = "example_request_id"
    order = 350

    def directives(self):
        """
        @return: C{x_request_id on|off;}, allowed in http, server and
            location, inherited inwards, off by default.
        """
        return [
            spec("x_request_id", [HTTP, SERVER, LOCATION], 1,
                 parse=flagSlot, default=False),
        ]

    def variables(self):
        """
        @return: C{$x_request_id}.
        """
        return [simple("x_request_id", requestId)]

    def configureLocation(self, location, compiler):
        """
        Add the response filter where C{x_request_id} is on.
        """
        if location.conf.get("x_request_id"):
            location.responseFilters.append(RequestIdHeader())


#: The plugin object: twisted.plugin finds module-level objects that
#: provide IPlugin, which ProxyModule does.
requestIdModule = RequestIdModule()
