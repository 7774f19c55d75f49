# -*- test-case-name: tests.integration.test_cli -*-
"""
C{twistd rproxy}: options and the service maker.  With no C{--config} it
runs the embedded demo config and its demo backend.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.application.service import MultiService
from twisted.python import usage

from .config.errors import ConfigError
from .plugins import PluginError


class Options(usage.Options):
    """
    C{twistd rproxy [--config FILE] [--prefix DIR] [--test]}.
    """

    synopsis = "[options]"
    longdesc = (
        "Run an nginx-compatible reverse proxy.  With no --config, serves an "
        "embedded demo on http://127.0.0.1:8080/ proxying to a demo backend."
    )
    optParameters = [
        ["config", "c", None, "The nginx-syntax config file."],
        ["prefix", "p", None, "Where relative paths resolve (default: the config's directory)."],
        ["global", "g", "", "Main-context directives, as nginx -g."],
    ]
    optFlags = [
        ["test", "t", "Check the config, print the result, and exit (like nginx -t)."],
    ]


def _fail(error: Exception) -> "None":
    """
    Report a start-up error as nginx would and exit 1, since twistd
    has no other way for makeService to refuse.
    """
    sys.stderr.write(f"rproxy: [emerg] {error}\n")
    sys.exit(1)


def checkConfig(path: Any, prefix: Any, globalDirectives: str) -> int:
    """
    Load a config and report like C{nginx -t}.

    @return: the process exit status.
    """
    from .service import loadConfig

    name = path or "(embedded demo)"
    if path is not None:
        _ensureLogsDirectory(prefix or os.path.dirname(os.path.abspath(path)))
    try:
        config = loadConfig(path=path or _demoPath(), prefix=prefix, globalDirectives=globalDirectives)
    except (ConfigError, PluginError, OSError) as e:
        sys.stderr.write(f"rproxy: [emerg] {e}\n")
        sys.stderr.write(f"rproxy: configuration file {name} test failed\n")
        return 1
    for line in config.notices + config.warnings:
        sys.stderr.write(f"rproxy: [warn] {line}\n")
    sys.stderr.write(f"rproxy: the configuration file {name} syntax is ok\n")
    sys.stderr.write(f"rproxy: configuration file {name} test is successful\n")
    return 0


def _ensureLogsDirectory(prefix: str) -> None:
    """
    Make C{PREFIX/logs}, where the default access log goes, as the
    C{rproxy} command does.
    """
    try:
        os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    except OSError:
        pass  # opening the log then reports the problem at file:line


def _demoPath() -> str:
    """
    @return: the embedded demo config's path.
    """
    from .demo import DEMO_CONFIG

    return DEMO_CONFIG


def makeService(options: Options) -> MultiService:
    """
    Build the proxy service (plus the demo backend when no config is given).
    """
    from .cli import raiseJITTraceLimit
    from .master import workerCount
    from .service import loadConfig, ProxyService

    if options["test"]:
        sys.exit(checkConfig(options["config"], options["prefix"], options["global"]))
    path = options["config"]
    if path is not None:
        _ensureLogsDirectory(options["prefix"] or os.path.dirname(os.path.abspath(path)))
    try:
        config = loadConfig(
            path=path or _demoPath(), prefix=options["prefix"], globalDirectives=options["global"]
        )
    except (ConfigError, PluginError, OSError) as e:
        _fail(e)
    workers = config.mainConf.get("worker_processes")
    if workerCount(workers) > 1:
        # One twistd process is one process; the rproxy command is the
        # master that runs workers.
        sys.stderr.write(
            f'rproxy: [notice] "worker_processes {workers}" runs one process under twistd; '
            f"the rproxy command runs that many workers\n")
    raiseJITTraceLimit()
    top = MultiService()
    ProxyService(config).setServiceParent(top)
    if path is None:
        from .demo import demoBackendService

        demoBackendService().setServiceParent(top)
    return top


