# -*- test-case-name: tests.unit.test_config_compiler -*-
"""
The http core module: the block structure (C{http}, C{server},
C{location}), listening and naming, client limits and timeouts, and the
top-level directives of a stock nginx.conf.
"""

from __future__ import annotations

from typing import Any, List, Sequence

from ..config.ast import Directive
from ..config.model import ListenAddress
from ..config.registry import (
    EVENTS,
    HTTP,
    LOCATION,
    MAIN,
    MERGE_NONE,
    SERVER,
    DirectiveSpec,
    spec,
)
from ..config.slots import flagSlot, numberSlot, sizeSlot, stringSlot, timeSlot
from ..config.values import parseSize
from ..module import ProxyModule
from .corevars import coreVariables

ALL_HTTP = (HTTP, SERVER, LOCATION)


def _parseListen(directive: Directive) -> ListenAddress:
    """
    C{listen ADDRESS [default_server] [ssl] [http2] [backlog=N] [flags...]}, where ADDRESS
    is C{port}, C{host:port}, C{host}, C{[v6]:port} or C{unix:path}.
    """
    args = directive.args
    address = args[0]
    host, port, unixPath = "", 80, None
    if address.startswith("unix:"):
        unixPath, port = address[5:], 0
        if not unixPath:
            raise ValueError(f'invalid host in "{address}" of the "listen" directive')
    elif address.startswith("["):
        end = address.find("]")
        if end < 0:
            raise ValueError(f'invalid host in "{address}" of the "listen" directive')
        host = address[1:end]
        rest = address[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f'invalid host in "{address}" of the "listen" directive')
            port = _port(rest[1:], address)
    elif address.isdigit():
        port = _port(address, address)
    else:
        name, sep, portText = address.rpartition(":")
        if sep:
            host, port = name, _port(portText, address)
        else:
            host = address
        if host in ("*", "0.0.0.0"):
            # One wildcard socket whichever way it is spelled, so that
            # "listen 80" and "listen 0.0.0.0:80" share it as in nginx.
            host = ""
        if host == "localhost":
            host = "127.0.0.1"
    defaultServer = False
    backlog = 511
    options: List[str] = []
    for arg in args[1:]:
        if arg in ("default_server", "default"):
            defaultServer = True
        elif arg.startswith("backlog="):
            try:
                backlog = int(arg[8:])
            except ValueError:
                raise ValueError(f'invalid backlog "{arg[8:]}"')
        elif arg in ("ssl", "http2"):
            options.append(arg)
        elif arg in ("quic", "proxy_protocol"):
            raise ValueError(
                f'the "{arg}" parameter of "listen" is not supported yet by twisted_rproxy'
            )
        elif arg in ("reuseport", "deferred", "bind") or arg.split("=", 1)[0] in (
            "rcvbuf",
            "sndbuf",
            "ipv6only",
            "so_keepalive",
            "fastopen",
            "accept_filter",
            "setfib",
        ):
            options.append(arg)
        else:
            raise ValueError(f'invalid parameter "{arg}"')
    return ListenAddress(
        host, port, unixPath, defaultServer, backlog, tuple(options), directive
    )


def _port(text: str, address: str) -> int:
    """
    @return: a listen port in 1..65535, worded as nginx's error otherwise.
    """
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f'invalid port in "{address}" of the "listen" directive')
    return int(text)


def _parseServerNames(directive: Directive) -> Sequence[str]:
    """
    C{server_name NAME...}: names lowercased (regexes kept as written),
    refusing variables nginx calls suspicious.
    """
    names = []
    for name in directive.args:
        if not name.startswith("~"):
            name = name.lower()
        if name.startswith("$"):
            raise ValueError(f'server name "{name}" has suspicious symbols')
        names.append(name)
    return tuple(names)


def _parseHeaderBuffers(directive: Directive) -> tuple:
    """
    C{large_client_header_buffers NUMBER SIZE}.
    """
    number, size = directive.args
    if not number.isdigit() or int(number) < 1:
        raise ValueError(f'invalid value "{number}" in "{directive.name}" directive')
    try:
        bytesize = parseSize(size)
    except ValueError:
        raise ValueError(f'invalid value "{size}" in "{directive.name}" directive')
    if bytesize < 2:
        raise ValueError(f'invalid value "{size}" in "{directive.name}" directive')
    return (int(number), bytesize)


def _parseKeepaliveTimeout(directive: Directive) -> float:
    # keepalive_timeout TIMEOUT [HEADER_TIMEOUT]: the second sets the
    # Keep-Alive response header, which nginx rarely needs; it is accepted.
    """
    C{keepalive_timeout TIMEOUT [HEADER_TIMEOUT]}: the idle timeout;
    the optional C{Keep-Alive: timeout=} value is accepted and unused.
    """
    return timeSlot(directive)


def _parseWorkerProcesses(directive: Directive) -> Any:
    """
    C{worker_processes N|auto}.
    """
    arg = directive.args[0]
    if arg == "auto":
        return "auto"
    return numberSlot(directive)


def _ignored(name: str, contexts: Sequence[str], nargs: Any = (0, None)) -> DirectiveSpec:
    """
    A directive of stock configs that means nothing here: accepted with a
    notice, never refused.
    """
    return spec(name, contexts, nargs, ignored=True)


_IGNORED_MAIN = (
    "user", "worker_rlimit_nofile", "worker_cpu_affinity", "worker_priority",
    "pcre_jit", "load_module", "env", "lock_file", "thread_pool", "timer_resolution",
    "working_directory", "master_process", "ssl_engine",
)
_IGNORED_EVENTS = ("worker_connections", "use", "multi_accept", "accept_mutex",
                   "accept_mutex_delay", "worker_aio_requests")
_IGNORED_HTTP = (
    "sendfile", "tcp_nopush", "types_hash_max_size",
    "types_hash_bucket_size", "server_names_hash_bucket_size",
    "server_names_hash_max_size", "variables_hash_max_size",
    "variables_hash_bucket_size", "client_body_temp_path", "proxy_temp_path",
    "fastcgi_temp_path", "uwsgi_temp_path", "scgi_temp_path", "open_file_cache",
    "open_file_cache_valid", "open_file_cache_min_uses", "open_file_cache_errors",
    "reset_timedout_connection", "lingering_close", "lingering_time",
    "lingering_timeout", "aio", "directio", "output_buffers", "postpone_output",
    "sendfile_max_chunk", "charset", "source_charset", "charset_types",
    "gzip", "gzip_vary", "gzip_proxied", "gzip_comp_level", "gzip_buffers",
    "gzip_http_version", "gzip_types", "gzip_min_length", "gzip_disable",
    "server_name_in_redirect",
    "port_in_redirect", "absolute_redirect", "msie_padding", "etag",
    "if_modified_since", "log_not_found", "log_subrequest", "client_body_in_file_only",
    "client_body_in_single_buffer",
    "map_hash_max_size", "map_hash_bucket_size", "underscores_in_headers",
    "ignore_invalid_headers", "merge_slashes", "chunked_transfer_encoding",
    "index", "autoindex", "root", "open_log_file_cache", "ssi",
    "proxy_cache_path", "limit_req_zone", "limit_conn_zone",
)


class HTTPCoreModule(ProxyModule):
    """
    Declares the structure of a config and the server/client settings the
    HTTP codec and router read.
    """

    name = "http_core"
    order = 0

    def directives(self) -> Sequence[DirectiveSpec]:
        """
        @return: the core directives (nginx's ngx_http_core_module and the
            parts of ngx_core_module a stock nginx.conf uses).
        """
        main = [
            spec("http", [MAIN], 0, block=HTTP),
            spec("events", [MAIN], 0, block=EVENTS),
            spec("worker_processes", [MAIN], 1, parse=_parseWorkerProcesses, default=1),
            spec("daemon", [MAIN], 1, parse=flagSlot, default=True),
            spec("pid", [MAIN], 1, parse=stringSlot, default="logs/rproxy.pid"),
            # How long a graceful stop (SIGQUIT) lets busy connections run,
            # byte tunnels included; unset, the service's 30 s bound.
            spec("worker_shutdown_timeout", [MAIN], 1, parse=timeSlot, default=None),
        ]
        main += [_ignored(n, [MAIN]) for n in _IGNORED_MAIN]
        main += [_ignored(n, [EVENTS]) for n in _IGNORED_EVENTS]
        main += [_ignored(n, ALL_HTTP) for n in _IGNORED_HTTP]
        # "types { text/html html; }" holds free-form entries: a raw block,
        # so its children are not checked as directives.
        main.append(spec("types", ALL_HTTP, 0, block="raw", ignored=True))
        return main + [
            spec("server", [HTTP], 0, block=SERVER),
            spec("location", [SERVER, LOCATION], (1, 2), block=LOCATION),
            spec("listen", [SERVER], (1, None), parse=_parseListen, multiple=True,
                 merge=MERGE_NONE),
            # Repeatable: nginx adds each server_name line's names to the
            # server's list.
            spec("server_name", [SERVER], (1, None), parse=_parseServerNames,
                 merge=MERGE_NONE, multiple=True),
            spec("client_max_body_size", ALL_HTTP, 1, parse=sizeSlot, default=1024 * 1024),
            spec("client_body_buffer_size", ALL_HTTP, 1, parse=sizeSlot, default=16384),
            # nginx's first small header buffer; heads are read whole here.
            spec("client_header_buffer_size", [HTTP, SERVER], 1, ignored=True),
            spec("large_client_header_buffers", [HTTP, SERVER], 2,
                 parse=_parseHeaderBuffers, default=(4, 8192)),
            spec("client_header_timeout", [HTTP, SERVER], 1, parse=timeSlot, default=60.0),
            spec("client_body_timeout", ALL_HTTP, 1, parse=timeSlot, default=60.0),
            spec("send_timeout", ALL_HTTP, 1, parse=timeSlot, default=60.0),
            spec("keepalive_timeout", ALL_HTTP, (1, 2), parse=_parseKeepaliveTimeout,
                 default=75.0),
            spec("keepalive_requests", ALL_HTTP, 1, parse=numberSlot, default=1000),
            spec("server_tokens", ALL_HTTP, 1, parse=flagSlot, default=True),
            # Applied when a connection is accepted, from its listener's
            # default server (nginx reads it per location, at keepalive,
            # TLS and unbuffered responses: every case but a plain one-shot
            # buffered one, which this proxy does not have).
            spec("tcp_nodelay", ALL_HTTP, 1, parse=flagSlot, default=True),
            spec("default_type", ALL_HTTP, 1, parse=stringSlot, default="text/plain"),
        ]

    def variables(self) -> Sequence[Any]:
        """
        @return: the request variables (C{$host}, C{$uri}, C{$http_*} ...).
        """
        return coreVariables()

