# -*- test-case-name: tests.integration.test_bench -*-
"""
The configs of one benchmark run: the backend nginx that serves fixed
bodies, the proxy config that nginx and twisted_rproxy both run unchanged,
and its equivalents for haproxy and Caddy.  Pure text generation, so a
test can check it without starting anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Tuple

BODY_SIZES: Dict[str, int] = {"1k": 1024, "64k": 64 * 1024, "1m": 1024 * 1024}
"""The fixed response bodies the backend serves, by URL path (C{/1k} ...)."""

POST_PATH = "/post"
"""The backend's request-body sink: reads the body, answers 200 "ok"."""

SSE_PATH = "/sse"
"""The streaming location: proxied with C{proxy_buffering off}."""

WS_PATH = "/ws"
"""The WebSocket location (the seeds' recipe): the byte tunnel in
twisted_rproxy, as in nginx, to the stream backend's echo."""

WS_RELAY_PATH = "/wsrelay"
"""twisted_rproxy only: the same location with C{proxy_websocket_relay
on} (nginx has no such mode), rewritten to the backend's C{/ws}."""

UPSTREAM_KEEPALIVE = 32
"""Idle keepalive connections each proxy keeps to the backend."""

_TEMP_PATHS = """\
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;
"""


def writeBodies(root: Path) -> None:
    """
    Write the fixed bodies the backend serves as static files under
    C{root} (one file per entry of L{BODY_SIZES}, named like its path).

    @param root: the backend's document root; created if missing.
    """
    root.mkdir(parents=True, exist_ok=True)
    pattern = b"0123456789abcdef" * 64
    for name, size in BODY_SIZES.items():
        body = (pattern * (size // len(pattern) + 1))[:size]
        (root / name).write_bytes(body)


def backendConfig(port: int, connections: int) -> str:
    """
    The backend nginx: one worker serving the fixed bodies from C{html/}
    with sendfile, and a POST sink, on 127.0.0.1:C{port}.

    @param port: where the backend listens.
    @param connections: C{worker_connections}; enough for every upstream
        connection the proxies open.
    @return: a complete nginx.conf (paths relative to its C{-p} prefix).
    """
    return f"""\
worker_processes 1;
worker_rlimit_nofile {connections * 2};
events {{
    worker_connections {connections};
}}
http {{
    access_log off;
{_TEMP_PATHS}    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port};
        root html;
        location / {{
        }}
        location = {POST_PATH} {{
            client_max_body_size 1m;
            client_body_buffer_size 64k;
            return 200 "ok\\n";
        }}
    }}
}}
"""


def tlsServer(tls: Optional[Tuple[int, str, str]]) -> str:
    """
    The HTTPS server block of the proxy config, or nothing.  HTTP/2 is
    offered there too (ALPN): wrk asks for no protocol and gets HTTP/1.1,
    h2load asks for h2.

    @param tls: C{(port, certificate, key)}: where the proxy terminates TLS
        and with which PEM files; C{None} for no HTTPS listener.
    """
    if tls is None:
        return ""
    port, certificate, key = tls
    return f"""\
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {certificate};
        ssl_certificate_key {key};
        # Stated, because the defaults differ: Debian's nginx 1.22 offers
        # TLSv1 to TLSv1.2 (TLSv1.3 joined nginx's default in 1.23.4) and
        # twisted_rproxy TLSv1.2 and TLSv1.3.  Left to the defaults, wrk
        # resumed TLS 1.2 sessions with nginx and TLS 1.3 sessions (an
        # X25519 exchange each) with twisted_rproxy.
        ssl_protocols TLSv1.2 TLSv1.3;
        # nginx ends an HTTP/2 connection after keepalive_requests (1,000)
        # with GOAWAY, and h2load does not reconnect: its 4 connections
        # then made 500 req/s for nginx, with 120 errors.
        keepalive_requests 1000000;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
"""


def webSocketLocations(relay: bool) -> str:
    """
    The WebSocket locations of the proxy config: the seeds' recipe, and
    with C{relay} the same plus C{proxy_websocket_relay on} at
    L{WS_RELAY_PATH} (twisted_rproxy only).
    """
    recipe = """\
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 3600s;
"""
    text = f"""\
        location {WS_PATH} {{
            proxy_pass http://stream;
{recipe}        }}
"""
    if relay:
        text += f"""\
        location {WS_RELAY_PATH} {{
            proxy_websocket_relay on;
            proxy_pass http://stream{WS_PATH};
{recipe}        }}
"""
    return text


def proxyConfig(port: int, backendPort: int, streamPort: int, connections: int,
                tls: Optional[Tuple[int, str, str]] = None,
                wsRelay: bool = False) -> str:
    """
    The proxy config, one text for nginx and twisted_rproxy: one worker,
    no access log, a keepalive upstream spoken to in HTTP/1.1 with the
    client's C{Connection} header cleared, and C{proxy_buffering off} for
    the streaming location.  Everything else is left at the defaults the
    two share.

    @param port: where the proxy listens (127.0.0.1).
    @param backendPort: the nginx backend's port.
    @param streamPort: the SSE backend's port.
    @param connections: C{worker_connections} (and the fd limit asked
        for), sized for the idle-connection scenarios.
    @param tls: an HTTPS listener to add (see L{tlsServer}).
    @param wsRelay: add twisted_rproxy's relayed WebSocket location.
    @return: a complete nginx.conf.
    """
    proxyHeaders = """\
            proxy_http_version 1.1;
            proxy_set_header Connection "";
"""
    return f"""\
worker_processes 1;
worker_rlimit_nofile {connections + 1024};
events {{
    worker_connections {connections};
}}
http {{
    access_log off;
    # The default 16k sends a 16 KiB body through a temporary file, then
    # to the upstream with sendfile after the head, where Nagle and
    # delayed ACKs stall every request ~40 ms (2,000 req/s instead of
    # 28,000): keep bodies of the post16k scenario in memory.
    client_body_buffer_size 32k;
{_TEMP_PATHS}
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    upstream backend {{
        server 127.0.0.1:{backendPort};
        keepalive {UPSTREAM_KEEPALIVE};
    }}
    upstream stream {{
        server 127.0.0.1:{streamPort};
        keepalive {UPSTREAM_KEEPALIVE};
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backend;
{proxyHeaders}        }}
        location {SSE_PATH} {{
            proxy_pass http://stream;
{proxyHeaders}            proxy_buffering off;
        }}
{webSocketLocations(wsRelay)}    }}
{tlsServer(tls)}}}
"""


def haproxyConfig(port: int, backendPort: int, streamPort: int, connections: int,
                  strictLimits: bool = True) -> str:
    """
    haproxy's equivalent of L{proxyConfig}: one thread, HTTP mode with
    keepalive on both sides (haproxy's default connection reuse), no
    logging, the streaming path routed to the SSE backend with
    C{option http-no-delay} (haproxy never buffers a body, but without it
    sends with MSG_MORE and the kernel holds small events back up to
    200 ms: the equivalent of C{proxy_buffering off}).

    @param port: where haproxy listens (127.0.0.1).
    @param backendPort: the nginx backend's port.
    @param streamPort: the SSE backend's port.
    @param connections: C{maxconn}.
    @param strictLimits: when false, C{no strict-limits}: haproxy reserves
        two descriptors per connection and by default refuses to start when
        the fd limit is lower; this way it warns and runs (idle client
        connections need only one each, as in nginx).
    @return: a complete haproxy.cfg.
    """
    limits = "" if strictLimits else "    no strict-limits\n"
    return f"""\
global
    maxconn {connections}
    nbthread 1
{limits}
defaults
    mode http
    option http-keep-alive
    timeout connect 60s
    timeout client 75s
    timeout server 60s
    timeout http-keep-alive 75s

frontend bench
    bind 127.0.0.1:{port}
    use_backend stream if {{ path_beg {SSE_PATH} }}
    use_backend stream if {{ path_beg {WS_PATH} }}
    default_backend backend

backend backend
    server b1 127.0.0.1:{backendPort}

backend stream
    option http-no-delay
    server s1 127.0.0.1:{streamPort}
"""


def caddyConfig(port: int, backendPort: int, streamPort: int,
                tls: Optional[Tuple[int, str, str]] = None) -> str:
    """
    Caddy's equivalent of L{proxyConfig}, as a Caddyfile: no admin
    endpoint, no automatic HTTPS, errors only in the log (Caddy keeps no
    access log unless asked), the backend reached through a pool keeping
    L{UPSTREAM_KEEPALIVE} idle connections, and the streaming path sent
    on at once (C{flush_interval -1}: C{proxy_buffering off}).  WebSocket
    upgrades need no directive in Caddy.  The sites have no host name, so
    they answer whatever C{Host} a client sends, as the others' default
    servers do (a site named C{127.0.0.1} answers other names with an empty
    200).  Unlike the other two, Caddy adds
    C{X-Forwarded-For}, C{-Proto} and C{-Host} to every proxied request:
    it has no switch to stop that.

    @param port: where Caddy listens (127.0.0.1).
    @param backendPort: the nginx backend's port.
    @param streamPort: the SSE and WebSocket backend's port.
    @param tls: C{(port, certificate, key)}: an HTTPS site too, with the
        same TLS versions as the other proxies (and HTTP/2 by ALPN).
    @return: a complete Caddyfile.
    """
    routes = f"""\
	handle {SSE_PATH}* {{
		reverse_proxy 127.0.0.1:{streamPort} {{
			flush_interval -1
		}}
	}}
	handle {WS_PATH}* {{
		reverse_proxy 127.0.0.1:{streamPort}
	}}
	handle {{
		reverse_proxy 127.0.0.1:{backendPort} {{
			transport http {{
				keepalive_idle_conns {UPSTREAM_KEEPALIVE}
				keepalive_idle_conns_per_host {UPSTREAM_KEEPALIVE}
			}}
		}}
	}}
"""
    text = f"""\
{{
	admin off
	auto_https off
	log {{
		level ERROR
	}}
	servers {{
		timeouts {{
			idle 75s
		}}
	}}
}}

http://:{port} {{
	bind 127.0.0.1
{routes}}}
"""
    if tls is not None:
        tlsPort, certificate, key = tls
        text += f"""
https://:{tlsPort} {{
	bind 127.0.0.1
	tls {certificate} {key} {{
		protocols tls1.2 tls1.3
	}}
{routes}}}
"""
    return text
