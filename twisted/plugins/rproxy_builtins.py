"""
The built-in feature modules of twisted_rproxy, registered exactly as a
team's own plugin would be: each module-level object providing
C{IProxyModule} is one plugin.
"""

from twisted_rproxy.plugins import builtinModules

(
    httpCore,
    maps,
    upstream,
    rewrite,
    errorPage,
    headers,
    proxy,
    accessLog,
) = builtinModules()
