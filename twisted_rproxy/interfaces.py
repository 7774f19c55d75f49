# -*- test-case-name: tests.unit.test_plugins -*-
"""
Every interface of twisted_rproxy, in one place, so a plugin author reads one
module to learn what the proxy asks of a plugin and what it offers in return.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IProxyModule(Interface):
    """
    A feature plugin, like nginx's C{ngx_module_t}.

    Built-in features provide this exactly as a team's own plugin does; the
    core knows no directive by name.  Modules are found with
    C{twisted.plugin.getPlugins(IProxyModule)}.
    """

    name = Attribute("A unique name, used in errors and notices.")
    order = Attribute(
        "An int: modules with a lower order have their location filters "
        "installed first (earlier in the request, later in the response)."
    )

    def directives():  # type: ignore[misc]
        """
        @return: the L{twisted_rproxy.config.registry.DirectiveSpec}s this
            module owns.
        """

    def variables():  # type: ignore[misc]
        """
        @return: the L{twisted_rproxy.variables.VariableSpec}s this module
            provides (C{$name} or C{$prefix_*} families).
        """

    def configure(compiler):  # type: ignore[misc]
        """
        Build this module's global runtime objects (upstreams, maps, log
        sinks) from the parsed config, before locations are built.

        @param compiler: the L{twisted_rproxy.config.compiler.Compiler}.
        """

    def configureServer(server, compiler):  # type: ignore[misc]
        """
        Add server-level request filters (post-read, server-rewrite phases)
        to a L{twisted_rproxy.config.model.VirtualServer} being built.
        """

    def configureLocation(location, compiler):  # type: ignore[misc]
        """
        Add this module's request filters, response filters, or content
        handler to a location being built.

        @param location: a L{twisted_rproxy.config.model.LocationBuilder}.
        @param compiler: the L{twisted_rproxy.config.compiler.Compiler}.
        """


class IExchange(Interface):
    """
    One request and its response, the same whatever codec carried it
    (HTTP/1.x or an HTTP/2 stream), like Envoy's stream.
    """

    method = Attribute("The request method, C{bytes}.")
    rawURI = Attribute("The request-target as sent, C{bytes}.")
    path = Attribute("The decoded, normalised path (nginx's C{$uri}), C{str}.")
    args = Attribute("The query string without C{?}, C{str} (C{$args}).")
    version = Attribute("C{b'HTTP/1.1'}, C{b'HTTP/1.0'} or C{b'HTTP/2.0'}.")
    requestHeaders = Attribute("List of C{(name, value)} C{bytes} pairs, as sent.")
    server = Attribute("The L{twisted_rproxy.config.model.VirtualServer}.")
    location = Attribute("The L{twisted_rproxy.config.model.Location}.")

    def header(lowerName):  # type: ignore[misc]
        """
        @return: the first value of a request header, or C{None}.
        """

    def startResponse(status, headers, reason=None):  # type: ignore[misc]
        """
        Send the response head through the response filters.

        @param status: the status code.
        @param headers: a list of C{(name, value)} C{bytes} pairs.
        """

    def write(data):  # type: ignore[misc]
        """
        Send part of the response body.
        """

    def finish():  # type: ignore[misc]
        """
        End the response.
        """

    def abort():  # type: ignore[misc]
        """
        Close the client connection at once: the response cannot complete.
        """

    def sendLocalReply(status, body=b"", headers=()):  # type: ignore[misc]
        """
        Answer with a locally made response (an error page or C{return}).
        """

    def readBody(consumer):  # type: ignore[misc]
        """
        Start delivering the request body to C{consumer}, an object with
        C{bodyReceived(data)} and C{bodyFinished()}.  It may call
        L{pauseBody}/L{resumeBody} for backpressure.
        """

    def setResponseProducer(producer):  # type: ignore[misc]
        """
        Register the C{IPushProducer} feeding the response body, so that a
        slow client pauses it.
        """


class IContentHandler(Interface):
    """
    The single terminal handler of a location (nginx's CONTENT phase, Envoy's
    router): C{proxy_pass}, C{return}, a team's own.
    """

    def handle(exchange):  # type: ignore[misc]
        """
        Produce the response for C{exchange} (synchronously or later).
        """


class IUpgradeHandler(Interface):
    """
    Takes over the client and backend connections once the backend answers
    C{101 Switching Protocols} (nginx's C{ngx_http_upstream_upgrade}).  A
    module sets one as a location's C{upgradeHandler}; without one the two
    connections are joined byte for byte (L{twisted_rproxy.http.tunnel}).
    This is where a WebSocket relay, or a team's own protocol, plugs in.
    """

    def startUpgrade(exchange, upstream, headers, onClose):  # type: ignore[misc]
        """
        Send the 101 head to the client (C{exchange.startResponse(101,
        headers)}) and join the connections.  Once it returns, the proxy
        hands the client's bytes (those already read first) to the pair.

        @param upstream: the backend connection's protocol; what it
            receives from now on goes to the returned L{IUpgradedPair}.
        @param headers: the 101's headers, as they go to the client.
        @param onClose: call once, when the pair has closed.
        @return: an L{IUpgradedPair}.
        """


class IUpgradedPair(Interface):
    """
    A client and a backend connection after a 101, joined by an
    L{IUpgradeHandler}: the proxy hands it each side's bytes and closes.
    """

    def write(data):  # type: ignore[misc]
        """
        Bytes from the backend, for the client.
        """

    def fromClient(data):  # type: ignore[misc]
        """
        Bytes from the client, for the backend.
        """

    def loseConnection():  # type: ignore[misc]
        """
        The backend closed: close the client once its data is written.
        """

    def clientLost():  # type: ignore[misc]
        """
        The client closed: close the backend.
        """


class IWebSocketMessageFilter(Interface):
    """
    Sees every message of a relayed WebSocket connection on a location
    (L{twisted_rproxy.modules.websocket.addMessageFilter} installs one), and
    may pass it on, rewrite it, drop it or close the connection.
    """

    def messageReceived(relay, payload, isBinary, fromClient):  # type: ignore[misc]
        """
        One whole message, before it is sent on.

        @param relay: the L{twisted_rproxy.http.wsrelay.WebSocketRelay};
            its C{exchange} is the upgrade request and its C{filterState}
            a dict for per-connection state (key it by the filter).
        @param payload: the message (C{bytes}, UTF-8 for text).
        @param isBinary: whether it is a binary message.
        @param fromClient: C{True} from the client, C{False} from the backend.
        @return: C{None} to pass it on unchanged; a C{(payload, isBinary)}
            pair to send instead; L{twisted_rproxy.http.wsrelay.DROP} to
            send nothing; a L{twisted_rproxy.http.wsrelay.CloseWith} to
            close both sides with its code and reason.
        """

    def connectionClosed(relay):  # type: ignore[misc]
        """
        The relayed connection has closed (called once).
        """


class IRequestFilter(Interface):
    """
    A request-phase filter.  C{phase} is one of
    L{twisted_rproxy.phases.PHASES}.
    """

    phase = Attribute("The phase name this filter runs in.")

    def requestHeaders(exchange):  # type: ignore[misc]
        """
        @return: C{None} to continue, a L{twisted_rproxy.phases.LocalReply}
            to answer at once, or a Deferred firing with either.
        """


class IResponseFilter(Interface):
    """
    A response filter: sees the response head (and may change it) before the
    client does.
    """

    def responseHeaders(exchange, status, headers):  # type: ignore[misc]
        """
        @param headers: the mutable list of C{(name, value)} pairs.
        @return: the (possibly new) list of headers.
        """


class ILogSink(Interface):
    """
    Writes one finished exchange (the LOG phase).
    """

    def log(exchange):  # type: ignore[misc]
        """
        Record C{exchange}, which is finished.
        """


class IBalancer(Interface):
    """
    Picks a peer of an upstream for an exchange.
    """

    def pick(exchange):  # type: ignore[misc]
        """
        @return: a L{twisted_rproxy.upstream.cluster.Peer}, or C{None} when no
            peer is available.
        """

    def release(peer, failed):  # type: ignore[misc]
        """
        Report the outcome of using C{peer}; C{failed} feeds passive health.
        """


class IBalancerFactory(Interface):
    """
    What a balancing directive of an C{upstream} block (C{least_conn},
    C{ip_hash}, C{hash}, C{random}, or a team's own) parses into: the
    upstream module finds it among the block's values and asks it for the
    group's L{IBalancer}, so a new method is only a new directive.
    """

    method = Attribute("The directive name, for error messages.")
    supportsBackup = Attribute(
        "Whether C{server ... backup} may be used with this method (nginx's "
        "C{NGX_HTTP_UPSTREAM_BACKUP} flag)."
    )

    def buildBalancer(peers, compiler):  # type: ignore[misc]
        """
        @param peers: the group's L{twisted_rproxy.upstream.cluster.Peer}s.
        @param compiler: the config compiler (C{reactor}, C{compileValue}).
        @return: an L{IBalancer} over C{peers}.
        """


class IHealthChecker(Interface):
    """
    Active probes of an upstream group's peers that take peers out of
    rotation and bring them back (C{Peer.setCheckFailed}), such as
    L{twisted_rproxy.upstream.health.HealthCheck} for C{health_check}.
    Built when the config is compiled, run only while a
    L{twisted_rproxy.service.ProxyService} serves that config.
    """

    upstream = Attribute("The L{twisted_rproxy.upstream.cluster.Upstream} checked.")
    running = Attribute("Whether probes are being scheduled.")

    def start():  # type: ignore[misc]
        """
        Start probing (the service starts, or a reload swaps this config
        in).
        """

    def stop():  # type: ignore[misc]
        """
        Stop probing, cancel probes in flight and put the peers this
        checker took out back in rotation.
        """


class IPeerState(Interface):
    """
    The counters of one upstream peer that passive health and the
    balancers read and change: what nginx keeps per peer in an upstream's
    shared C{zone}.  L{twisted_rproxy.upstream.cluster.Peer} reads and
    writes them through its C{state}, so a provider backed by shared
    memory or a network store makes them common to every process using it.
    Updates are a read then a write (C{conns += 1}); a shared provider must
    make them safe across processes (a lock per peer, as nginx's zone
    takes, or per-process parts summed on read).
    """

    fails = Attribute("Failures counted in the current C{fail_timeout} period.")
    checked = Attribute("When the current accounting period began (reactor seconds).")
    accessed = Attribute("When the peer last failed (reactor seconds).")
    conns = Attribute("Connections in use now (C{max_conns}, C{least_conn}).")


class IPeerStateStore(Interface):
    """
    Hands out the L{IPeerState} of each peer of each upstream group.  The
    default keeps them in the process
    (L{twisted_rproxy.upstream.peerstate.MemoryPeerStateStore}); a module
    may put another in C{compiler.state["peerStateStore"]} from its
    C{configure} (run before the upstream module's, C{order} < 60) so that
    workers or machines share them.
    """

    def stateFor(zone, upstream, address):  # type: ignore[misc]
        """
        @param zone: the group's C{zone} name, or C{None}.
        @param upstream: the group's name.
        @param address: the peer as C{$upstream_addr} shows it.
        @return: that peer's L{IPeerState}, the same one on every call.
        """


class IExchangeChannel(Interface):
    """
    What an L{IExchange} asks of the codec that carries it: the HTTP/1.1
    connection (L{twisted_rproxy.http.channel.HTTPChannel}) or one HTTP/2
    stream (L{twisted_rproxy.http.h2stream.H2Stream}), so routing,
    modules, proxying and logging need not know which.
    """

    listener = Attribute("The L{twisted_rproxy.config.model.Listener} of the connection.")
    scheme = Attribute("C{'http'} or C{'https'}.")
    transport = Attribute("The connection's transport (TLS variables read it).")
    clientAddress = Attribute("The client's address (C{getPeer()}).")
    serverAddress = Attribute("The local address (C{getHost()}).")
    connectionNumber = Attribute("C{$connection}.")
    requestCount = Attribute("C{$connection_requests}.")

    def normalizeHost(raw):  # type: ignore[misc]
        """
        @return: a Host value as a server name, or C{None} if invalid.
        """

    def declaredBodyLength(exchange):  # type: ignore[misc]
        """
        @return: the declared body length, else the bytes received so far.
        """

    def hasRequestBody(exchange):  # type: ignore[misc]
        """
        @return: whether the request carries a body.
        """

    def bodyWanted(exchange):  # type: ignore[misc]
        """
        A handler reads the body now (C{100 Continue}, open the window).
        """

    def pauseBody(exchange):  # type: ignore[misc]
        """
        Stop taking request body from the client.
        """

    def resumeBody(exchange):  # type: ignore[misc]
        """
        Take request body again.
        """

    def sendHead(exchange, status, reason, headers):  # type: ignore[misc]
        """
        Frame and send the response head.
        """

    def sendBody(exchange, data):  # type: ignore[misc]
        """
        Send a piece of the response body.
        """

    def responseDone(exchange):  # type: ignore[misc]
        """
        The response is complete: log it and end it.
        """

    def abortExchange(exchange):  # type: ignore[misc]
        """
        The response cannot complete: drop what carries it.
        """

    def exchangeProducerChanged(exchange):  # type: ignore[misc]
        """
        A response producer registered: pause it if the client is behind.
        """

    def enterTunnel(exchange, tunnel):  # type: ignore[misc]
        """
        Hand the client side to a byte tunnel after a 101 (or refuse).
        """
