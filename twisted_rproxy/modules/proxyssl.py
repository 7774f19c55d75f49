# -*- test-case-name: tests.unit.test_upstream_tls -*-
"""
The C{proxy_ssl_*} directives (the upstream-TLS part of nginx's
C{ngx_http_proxy_module}): for a location whose C{proxy_pass} is
C{https://...} (or has variables, so may be), the client context is built
when the config is compiled, so a missing trusted certificate or a key that
does not match fails C{-t} at the directive's file:line.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Sequence

from ..config.ast import Directive
from ..config.registry import HTTP, LOCATION, SERVER, DirectiveSpec, spec
from ..config.slots import flagSlot, stringSlot
from ..module import ProxyModule
from ..tls import PROTOCOLS, TLSLoadError
from ..upstream.tls import UpstreamTLS, UpstreamTLSSettings

ALL = (HTTP, SERVER, LOCATION)

#: Versions nginx accepts in C{proxy_ssl_protocols} that OpenSSL 3 cannot speak.
_OBSOLETE = ("SSLv2", "SSLv3")

_STATE = "proxy_ssl"


def _parsePath(directive: Directive) -> str:
    """
    A file argument: no variables, no C{data:}/C{engine:} forms.
    """
    path = directive.args[0]
    if "$" in path or path.startswith(("data:", "engine:")):
        raise ValueError(f'"{path}" in "{directive.name}" is not supported by twisted_rproxy')
    return path


def _parseProtocols(directive: Directive) -> tuple:
    """
    C{proxy_ssl_protocols [TLSv1] [TLSv1.1] [TLSv1.2] [TLSv1.3]}.
    """
    for name in directive.args:
        if name not in PROTOCOLS and name not in _OBSOLETE:
            raise ValueError(f'invalid value "{name}" in "{directive.name}" directive')
    return tuple(directive.args)


def _parseDepth(directive: Directive) -> int:
    """
    C{proxy_ssl_verify_depth N}.
    """
    value = directive.args[0]
    if not value.isdigit():
        raise ValueError(f'invalid value "{value}" in "{directive.name}" directive')
    return int(value)


class ProxySSLModule(ProxyModule):
    """
    TLS to backends for C{proxy_pass https://...}.
    """

    name = "proxy_ssl"
    order = 401  # after the proxy module has built the location's handler

    def directives(self) -> Sequence[DirectiveSpec]:
        """
        @return: the C{proxy_ssl_*} directives, with nginx's defaults.
        """
        return [
            spec("proxy_ssl_verify", ALL, 1, parse=flagSlot, default=False),
            spec("proxy_ssl_verify_depth", ALL, 1, parse=_parseDepth, default=1),
            spec("proxy_ssl_trusted_certificate", ALL, 1, parse=_parsePath),
            spec("proxy_ssl_name", ALL, 1, parse=stringSlot, default="$proxy_host"),
            spec("proxy_ssl_server_name", ALL, 1, parse=flagSlot, default=False),
            spec("proxy_ssl_certificate", ALL, 1, parse=_parsePath),
            spec("proxy_ssl_certificate_key", ALL, 1, parse=_parsePath),
            spec("proxy_ssl_protocols", ALL, (1, None), parse=_parseProtocols,
                 default=("TLSv1.2", "TLSv1.3")),
            spec("proxy_ssl_ciphers", ALL, 1, parse=stringSlot, default="DEFAULT"),
            spec("proxy_ssl_session_reuse", ALL, 1, parse=flagSlot, default=True),
        ]

    def configure(self, compiler: Any) -> None:
        """
        Start this compile's table of client contexts (equal settings share).
        """
        compiler.state[_STATE] = {}

    def configureLocation(self, location: Any, compiler: Any) -> None:
        """
        Give an https-capable C{proxy_pass} handler its L{UpstreamTLS}.

        @raise twisted_rproxy.config.errors.ConfigError: at the directive
            whose file or value cannot be used.
        """
        handler = location.contentHandler
        target = getattr(handler, "target", None)
        if target is None or not hasattr(handler, "tlsName"):
            return
        if target.url is None and target.scheme != "https":
            return
        conf = location.conf
        nameSource = conf.source("proxy_ssl_name")
        handler.tlsName = compiler.compileValue(conf.get("proxy_ssl_name"), nameSource)
        handler.tls = self._tls(conf, location, compiler)
        if target.scheme == "https":
            self._probeOverTLS(location, handler, compiler)

    def _probeOverTLS(self, location: Any, handler: Any, compiler: Any) -> None:
        """
        The location's C{health_check}s (made just before by the upstream
        module, the last ones in its list) probe over TLS, verified as the
        location's requests are; a C{proxy_ssl_name} with variables is
        taken as C{$proxy_host} there, having no request to evaluate.
        """
        count = len(location.conf.get("health_check") or ())
        if not count:
            return
        from .upstream import STATE

        name = handler.tlsName.static
        if name is None:
            name = handler.target.proxyHost
        name = name[: name.find("]") + 1] if name.startswith("[") else name.partition(":")[0]
        tlsTarget = handler.tls.target(name)
        pool = handler.pool

        def connect(peer: Any, timeout: float) -> Any:
            return pool.connect(peer, timeout, tlsTarget)

        for check in compiler.state[STATE]["healthChecks"][-count:]:
            check.connectWith(connect)

    def _tls(self, conf: Any, location: Any, compiler: Any) -> UpstreamTLS:
        """
        @return: the shared L{UpstreamTLS} for the location's settings.
        """
        base = _confDirectory(compiler)
        verify = conf.get("proxy_ssl_verify")
        trusted = conf.get("proxy_ssl_trusted_certificate")
        certificate = conf.get("proxy_ssl_certificate")
        key = conf.get("proxy_ssl_certificate_key")
        blame = conf.source("proxy_pass")
        if verify and trusted is None:
            raise (conf.source("proxy_ssl_verify") or blame).error(
                'no "proxy_ssl_trusted_certificate" for "proxy_ssl_verify"'
            )
        if certificate is not None and key is None:
            raise conf.source("proxy_ssl_certificate").error(
                f'no "proxy_ssl_certificate_key" is defined for certificate "{certificate}"'
            )
        settings = UpstreamTLSSettings(
            verify=verify,
            trusted=None if trusted is None else os.path.join(base, trusted),
            certificate=None if certificate is None else os.path.join(base, certificate),
            key=None if key is None or certificate is None else os.path.join(base, key),
            protocols=tuple(conf.get("proxy_ssl_protocols")),
            ciphers=conf.get("proxy_ssl_ciphers"),
            verifyDepth=conf.get("proxy_ssl_verify_depth"),
            serverName=conf.get("proxy_ssl_server_name"),
            sessionReuse=conf.get("proxy_ssl_session_reuse"),
        )
        cache: Dict[UpstreamTLSSettings, UpstreamTLS] = compiler.state[_STATE]
        found = cache.get(settings)
        if found is None:
            try:
                found = cache[settings] = UpstreamTLS(settings)
            except TLSLoadError as e:
                raise (conf.source(e.which) or blame).error(str(e))
        return found


def _confDirectory(compiler: Any) -> str:
    """
    @return: where relative paths resolve, as for C{ssl_certificate}.
    """
    from .ssl import _confDirectory as sslConfDirectory

    return sslConfDirectory(compiler)
