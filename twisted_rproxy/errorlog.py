# -*- test-case-name: tests.unit.test_errorlog -*-
"""
C{error_log FILE [LEVEL]}: Twisted log events written in nginx's error log
format (C{2026/11/23 18:00:00 [error] 123#0: message}), so operators' log
tooling keeps working.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import IO, Any, Optional

from twisted.logger import ILogObserver, LogLevel, formatEvent, globalLogPublisher
from zope.interface import implementer

from .modules.accesslog import ERROR_LEVELS

_FROM_TWISTED = {
    LogLevel.debug: "debug",
    LogLevel.info: "info",
    LogLevel.warn: "warn",
    LogLevel.error: "error",
    LogLevel.critical: "crit",
}


def formatLine(event: dict) -> str:
    """
    @return: one error log line for a Twisted log event.
    """
    level = _FROM_TWISTED.get(event.get("log_level", LogLevel.info), "info")
    stamp = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(event.get("log_time", time.time())))
    text = formatEvent(event)
    failure = event.get("log_failure")
    if failure is not None:
        text = f"{text}\n{failure.getTraceback()}"
    return f"{stamp} [{level}] {os.getpid()}#{threading.get_native_id()}: {text}\n"


@implementer(ILogObserver)
class ErrorLogObserver:
    """
    Writes events at or above a level to a file (or standard error).
    """

    def __init__(self, path: str, level: str = "error") -> None:
        """
        @param path: a file, or C{stderr}.
        @param level: the least severe nginx level written.
        """
        self.path = path
        self.threshold = ERROR_LEVELS.index(level)
        self._file: Optional[IO[str]] = None

    @classmethod
    def fromConfig(
        cls, config: Any, default: Optional[str] = None
    ) -> Optional["ErrorLogObserver"]:
        """
        @param default: the file to use at level C{error} when the config
            sets no C{error_log} (the C{rproxy} command passes nginx's
            C{logs/error.log}).
        @return: an observer for the main-context C{error_log}, or C{None}
            when the config sets none and there is no default (events then
            reach only Twisted's own log, as when embedded).
        """
        entries = config.mainConf.get("error_log")
        if entries:
            path, level = entries[0]
        elif default is not None:
            path, level = default, "error"
        else:
            return None
        if path != "stderr" and not os.path.isabs(path):
            path = os.path.join(config.prefix, path)
        return cls(path, level)

    def _open(self) -> IO[str]:
        """
        @return: the stream to write: standard error, or the file
            (line-buffered, so a crash loses no finished line).
        """
        if self.path == "stderr":
            return sys.stderr
        return open(self.path, "a", buffering=1)

    def start(self) -> None:
        """
        Open the file and start observing.
        """
        self._file = self._open()
        globalLogPublisher.addObserver(self)

    def stop(self) -> None:
        """
        Stop observing and close the file.
        """
        globalLogPublisher.removeObserver(self)
        if self._file is not None and self._file is not sys.stderr:
            self._file.close()
        self._file = None

    def reopen(self) -> None:
        """
        Reopen the file after rotation.
        """
        if self._file is not None and self._file is not sys.stderr:
            self._file.close()
            self._file = self._open()

    def __call__(self, event: dict) -> None:
        """
        Write C{event} when it is severe enough.
        """
        level = _FROM_TWISTED.get(event.get("log_level", LogLevel.info), "info")
        if ERROR_LEVELS.index(level) < self.threshold or self._file is None:
            return
        try:
            self._file.write(formatLine(event))
        except Exception:
            pass
