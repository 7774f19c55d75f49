"""
The built-in feature modules of twisted_rproxy, registered exactly as a
team's own plugin would be: each module-level object providing
C{IProxyModule} is one plugin.

Each is taken by its C{name} rather than by position, so this file does not
break when a built-in module is added; the attribute names stay fixed, as
C{dropin.cache} (refreshed only when this file changes) expects.
"""

from twisted_rproxy.plugins import builtinModules

_byName = {module.name: module for module in builtinModules()}

httpCore = _byName["http_core"]
maps = _byName["map"]
upstream = _byName["upstream"]
leastConn = _byName["upstream_least_conn"]
ipHash = _byName["upstream_ip_hash"]
hashing = _byName["upstream_hash"]
randomChoice = _byName["upstream_random"]
rewrite = _byName["rewrite"]
errorPage = _byName["error_page"]
headers = _byName["headers"]
proxy = _byName["proxy"]
accessLog = _byName["log"]
ssl = _byName["http_ssl"]
websocket = _byName["websocket"]
http2 = _byName["http2"]
proxySSL = _byName["proxy_ssl"]

del _byName
