"""
The C{twistd rproxy} command: a string module path keeps C{twistd --help}
from importing the proxy.
"""

from twisted.application.service import ServiceMaker

rproxy = ServiceMaker(
    "twisted_rproxy",
    "twisted_rproxy.tap",
    "An nginx-compatible reverse proxy configured in nginx syntax.",
    "rproxy",
)
