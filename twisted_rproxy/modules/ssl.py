# -*- test-case-name: tests.unit.test_tls -*-
"""
The ssl module (nginx's C{ngx_http_ssl_module}): C{ssl_certificate},
C{ssl_certificate_key}, C{ssl_protocols}, C{ssl_ciphers}, the session
settings, and the C{$ssl_*} variables.  Certificates are loaded when the
config is compiled, so a missing, unreadable or mismatched one fails
C{-t} and start-up at the directive's file:line; each TLS listener then
gets a L{ListenerTLS <twisted_rproxy.tls.ListenerTLS>} choosing the
certificate by SNI.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import attr

from ..config.ast import Directive
from ..config.registry import HTTP, SERVER, DirectiveSpec, spec
from ..config.slots import flagSlot, stringSlot, timeSlot
from ..module import ProxyModule
from ..tls import PROTOCOLS, TLSLoadError, TLSSettings, connectionInfo, makeContext
from ..tls import PlainHTTPFilter, serverNameCallback
from ..tlsextras import (
    VERIFY_CLIENT,
    ClientCertificateFilter,
    ServerTLSExtras,
    VerifyingListenerTLS,
    applyExtras,
    clientVerify,
    fingerprint,
    peerCertificate,
    serialText,
)
from ..variables import VariableSpec, simple

_CONTEXTS = (HTTP, SERVER)

#: Accepted with a notice: what is not implemented yet.
_IGNORED: Tuple[str, ...] = ()

#: Versions nginx accepts in C{ssl_protocols} that OpenSSL 3 cannot speak.
_OBSOLETE = ("SSLv2", "SSLv3")


@attr.s(frozen=True, slots=True, auto_attribs=True)
class _PathArg:
    """
    A file named by a repeatable directive, with the directive for errors.
    """

    path: str
    directive: Directive


def _parsePath(directive: Directive) -> _PathArg:
    """
    C{ssl_certificate FILE} / C{ssl_certificate_key FILE}.
    """
    path = directive.args[0]
    if "$" in path:
        raise ValueError(
            f'variables in "{directive.name}" are not supported by twisted_rproxy'
        )
    if path.startswith("data:") or path.startswith("engine:"):
        raise ValueError(
            f'"{path.split(":", 1)[0]}:" in "{directive.name}" is not supported by twisted_rproxy'
        )
    return _PathArg(path, directive)


def _parseProtocols(directive: Directive) -> Tuple[str, ...]:
    """
    C{ssl_protocols [SSLv2] [SSLv3] [TLSv1] [TLSv1.1] [TLSv1.2] [TLSv1.3]}.
    """
    for name in directive.args:
        if name not in PROTOCOLS and name not in _OBSOLETE:
            raise ValueError(f'invalid value "{name}" in "{directive.name}" directive')
    return tuple(directive.args)


def _parseSessionCache(directive: Directive) -> bool:
    """
    C{ssl_session_cache off | none | [builtin[:size]] [shared:name:size]}:
    whether sessions are cached (in this process) for resumption by id.
    """
    cache = False
    for arg in directive.args:
        if arg in ("off", "none"):
            if len(directive.args) > 1:
                raise ValueError(f'invalid session cache "{arg}"')
            return False
        if arg == "builtin" or arg.startswith("builtin:"):
            size = arg[8:]
            if size and not size.isdigit():
                raise ValueError(f'invalid session cache "{arg}"')
            cache = True
        elif arg.startswith("shared:"):
            name, sep, size = arg[7:].rpartition(":")
            if not sep or not name or not size:
                raise ValueError(f'invalid session cache "{arg}"')
            cache = True
        else:
            raise ValueError(f'invalid session cache "{arg}"')
    return cache


def _protocolName(exchange: Any) -> Optional[str]:
    """
    C{$ssl_protocol}: C{TLSv1.2}, C{TLSv1.3} ...; unset on plain connections.
    """
    connection = connectionInfo(exchange.channel.transport)
    return None if connection is None else connection.get_protocol_version_name()


def _cipherName(exchange: Any) -> Optional[str]:
    """
    C{$ssl_cipher}: OpenSSL's name of the negotiated cipher.
    """
    connection = connectionInfo(exchange.channel.transport)
    return None if connection is None else connection.get_cipher_name()


def _serverName(exchange: Any) -> Optional[str]:
    """
    C{$ssl_server_name}: the name the client sent by SNI, unset without.
    """
    connection = connectionInfo(exchange.channel.transport)
    if connection is None:
        return None
    name = connection.get_servername()
    return None if name is None else name.decode("latin-1")


def _parseVerifyClient(directive: Directive) -> str:
    """
    C{ssl_verify_client on | off | optional | optional_no_ca}.
    """
    value = directive.args[0]
    if value not in VERIFY_CLIENT:
        raise ValueError(f'invalid value "{value}" in "{directive.name}" directive, '
                         'it must be "on", "off", "optional" or "optional_no_ca"')
    return value


def _parseDepth(directive: Directive) -> int:
    """
    C{ssl_verify_depth N}.
    """
    value = directive.args[0]
    if not value.isdigit():
        raise ValueError(f'invalid value "{value}" in "{directive.name}" directive')
    return int(value)


def _clientCertificateOf(exchange: Any) -> Any:
    """
    @return: the client's certificate (cached per request), or C{None}.
    """
    cache = exchange.variableCache
    if "_ssl_client_cert" in cache:
        return cache["_ssl_client_cert"]
    connection = connectionInfo(exchange.channel.transport)
    certificate = None if connection is None else peerCertificate(connection)
    cache["_ssl_client_cert"] = certificate
    return certificate


def _clientVerify(exchange: Any) -> Optional[str]:
    """
    C{$ssl_client_verify}.
    """
    return clientVerify(connectionInfo(exchange.channel.transport))


def _certificateField(read: Any) -> Any:
    """
    @return: a variable getter applying C{read} to the client certificate;
        empty (as nginx) on a TLS connection without one.
    """

    def get(exchange: Any) -> Optional[str]:
        if connectionInfo(exchange.channel.transport) is None:
            return None
        certificate = _clientCertificateOf(exchange)
        return "" if certificate is None else read(certificate)

    return get


class SSLModule(ProxyModule):
    """
    TLS termination for C{listen ... ssl}.
    """

    name = "http_ssl"
    order = 5

    def directives(self) -> Sequence[DirectiveSpec]:
        """
        @return: the ssl directives (nginx's ngx_http_ssl_module).
        """
        return [
            spec("ssl_certificate", _CONTEXTS, 1, parse=_parsePath, multiple=True),
            spec("ssl_certificate_key", _CONTEXTS, 1, parse=_parsePath, multiple=True),
            spec("ssl_protocols", _CONTEXTS, (1, None), parse=_parseProtocols,
                 default=("TLSv1.2", "TLSv1.3")),
            spec("ssl_ciphers", _CONTEXTS, 1, parse=stringSlot, default="HIGH:!aNULL:!MD5"),
            spec("ssl_prefer_server_ciphers", _CONTEXTS, 1, parse=flagSlot, default=False),
            spec("ssl_session_cache", _CONTEXTS, (1, 2), parse=_parseSessionCache,
                 default=False),
            spec("ssl_session_timeout", _CONTEXTS, 1, parse=timeSlot, default=300.0),
            spec("ssl_session_tickets", _CONTEXTS, 1, parse=flagSlot, default=True),
            spec("ssl_client_certificate", _CONTEXTS, 1, parse=_parsePath),
            spec("ssl_trusted_certificate", _CONTEXTS, 1, parse=_parsePath),
            spec("ssl_verify_client", _CONTEXTS, 1, parse=_parseVerifyClient, default="off"),
            spec("ssl_verify_depth", _CONTEXTS, 1, parse=_parseDepth, default=1),
            spec("ssl_stapling", _CONTEXTS, 1, parse=flagSlot, default=False),
            spec("ssl_stapling_file", _CONTEXTS, 1, parse=_parsePath),
            spec("ssl_stapling_verify", _CONTEXTS, 1, parse=flagSlot, default=False),
            spec("ssl_dhparam", _CONTEXTS, 1, parse=_parsePath),
            spec("ssl_ecdh_curve", _CONTEXTS, 1, parse=stringSlot, default="auto"),
        ] + [spec(name, _CONTEXTS, (1, None), ignored=True) for name in _IGNORED]

    def variables(self) -> Sequence[VariableSpec]:
        """
        @return: C{$ssl_protocol}, C{$ssl_cipher}, C{$ssl_server_name}.
        """
        return [
            simple("ssl_protocol", _protocolName),
            simple("ssl_cipher", _cipherName),
            simple("ssl_server_name", _serverName),
            simple("ssl_client_verify", _clientVerify),
            simple("ssl_client_s_dn", _certificateField(lambda c: c.subject.rfc4514_string())),
            simple("ssl_client_i_dn", _certificateField(lambda c: c.issuer.rfc4514_string())),
            simple("ssl_client_serial", _certificateField(lambda c: serialText(c.serial_number))),
            simple("ssl_client_fingerprint", _certificateField(fingerprint)),
        ]

    def configure(self, compiler: Any) -> None:
        """
        Start this compile's table of contexts.
        """
        compiler.state[self.name] = {"contexts": {}, "servers": {}}

    def configureServer(self, server: Any, compiler: Any) -> None:
        """
        Load the certificates of a server that has any (inherited ones
        too), as nginx does for every server, listening with C{ssl} or not.

        @raise twisted_rproxy.config.errors.ConfigError: at the directive
            of the file that cannot be used.
        """
        conf = server.conf
        certificates: List[_PathArg] = list(conf.get("ssl_certificate") or ())
        keys: List[_PathArg] = list(conf.get("ssl_certificate_key") or ())
        if not certificates:
            if keys:
                raise keys[0].directive.error(
                    'no "ssl_certificate" is defined for the "ssl_certificate_key" '
                    f'"{keys[0].path}"'
                )
            return
        if len(keys) < len(certificates):
            missing = certificates[len(keys)]
            raise missing.directive.error(
                f'no "ssl_certificate_key" is defined for certificate "{missing.path}"'
            )
        if len(keys) > len(certificates):
            extra = keys[len(certificates)]
            raise extra.directive.error(
                f'no "ssl_certificate" is defined for the "ssl_certificate_key" "{extra.path}"'
            )
        base = _confDirectory(compiler)
        settings = TLSSettings(
            certificates=tuple(os.path.join(base, c.path) for c in certificates),
            keys=tuple(os.path.join(base, k.path) for k in keys),
            protocols=tuple(conf.get("ssl_protocols")),
            ciphers=conf.get("ssl_ciphers"),
            preferServerCiphers=conf.get("ssl_prefer_server_ciphers"),
            sessionTickets=conf.get("ssl_session_tickets"),
            sessionTimeout=int(conf.get("ssl_session_timeout")),
            sessionCache=conf.get("ssl_session_cache"),
        )
        extras = self._extras(conf, base, certificates[0].directive, compiler)
        state = compiler.state[self.name]
        context = state["contexts"].get((settings, extras))
        if context is None:
            try:
                context = makeContext(settings, serverNameCallback)
                ignored = applyExtras(context, extras, settings.certificates)
            except TLSLoadError as e:
                if e.which == "certificate":
                    directive = certificates[e.index].directive
                elif e.which == "key":
                    directive = keys[e.index].directive
                elif e.which.startswith("ssl_"):
                    directive = conf.source(e.which) or certificates[0].directive
                else:
                    directive = conf.source("ssl_ciphers") or certificates[0].directive
                raise directive.error(str(e))
            if ignored is not None:
                where = conf.source("ssl_stapling") or certificates[0].directive
                compiler.notice(
                    f'"ssl_stapling" ignored, {ignored} in {where.filename}:{where.line}'
                )
            state["contexts"][(settings, extras)] = context
        state["servers"][id(server)] = context
        # First of all: a plain request on a TLS port is nginx's 497.
        server.requestFilters.insert(0, PlainHTTPFilter())
        if extras.verifyClient != "off":
            server.requestFilters.append(ClientCertificateFilter(extras.verifyClient))

    def _extras(self, conf: Any, base: str, fallback: Directive,
                compiler: Any) -> ServerTLSExtras:
        """
        @return: the server's client-certificate, stapling and key-exchange
            settings, checked as nginx checks them.
        """
        def path(name: str) -> Optional[str]:
            value = conf.get(name)
            return None if value is None else os.path.join(base, value.path)

        verify = conf.get("ssl_verify_client")
        clientCertificate = path("ssl_client_certificate")
        trusted = path("ssl_trusted_certificate")
        if verify in ("on", "optional") and clientCertificate is None and trusted is None:
            raise (conf.source("ssl_verify_client") or fallback).error(
                'no ssl_client_certificate for ssl_verify_client'
            )
        stapling = conf.get("ssl_stapling")
        staplingFile = path("ssl_stapling_file")
        return ServerTLSExtras(
            verifyClient=verify,
            clientCertificate=clientCertificate,
            trustedCertificate=trusted,
            verifyDepth=conf.get("ssl_verify_depth"),
            stapling=stapling,
            staplingFile=staplingFile,
            staplingVerify=conf.get("ssl_stapling_verify"),
            dhparam=path("ssl_dhparam"),
            ecdhCurve=conf.get("ssl_ecdh_curve"),
        )

    def configureListener(self, listener: Any, compiler: Any) -> None:
        """
        Give a C{listen ... ssl} socket its L{ListenerTLS}, after checking
        that every server reachable on it has a certificate.

        @raise twisted_rproxy.config.errors.ConfigError: a server without
            C{ssl_certificate}, or a specific address whose C{ssl} differs
            from the wildcard socket that serves it.
        """
        views = [listener] + list((listener.byLocalAddress or {}).values())
        for view in views[1:]:
            if view.ssl != listener.ssl:
                raise _located(
                    view.address,
                    f'the "ssl" parameter of "listen {view.address.display()}" differs '
                    f'from that of "listen {listener.address.display()}", whose socket '
                    "serves it; twisted_rproxy does not support mixing them on one port",
                )
        if not listener.ssl:
            return
        servers: Dict[int, Any] = compiler.state[self.name]["servers"]
        contexts = {}
        for view in views:
            for server in view.servers:
                context = servers.get(id(server))
                if context is None:
                    address = _listenOf(server, view.address)
                    raise _located(
                        address,
                        'no "ssl_certificate" is defined for the "listen ... ssl" directive',
                    )
                contexts[id(server)] = context
        listener.tls = VerifyingListenerTLS(listener, contexts)


def _confDirectory(compiler: Any) -> str:
    """
    @return: where relative certificate paths resolve: the main config
        file's directory, as nginx's conf prefix with C{-c}, else the prefix.
    """
    filename = getattr(compiler, "filename", "<string>")
    if filename and not filename.startswith("<") and os.path.exists(filename):
        return os.path.dirname(os.path.abspath(filename))
    return compiler.prefix


def _listenOf(server: Any, address: Any) -> Any:
    """
    @return: the C{listen} of C{server} for C{address}'s socket.
    """
    for candidate in server.listens:
        if candidate.key == address.key:
            return candidate
    return address


def _located(address: Any, message: str) -> Exception:
    """
    @return: a config error at the C{listen} directive of C{address}.
    """
    from ..config.errors import ConfigError

    if address.source is None:
        return ConfigError(message)
    return address.source.error(message)  # type: ignore[no-any-return]
