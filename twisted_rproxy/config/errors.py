# -*- test-case-name: tests.unit.test_config_parser -*-
"""
The one error type every config problem raises, so callers can print it the
way nginx does (C{... in FILE:LINE}) and refuse to start.
"""

from __future__ import annotations

from typing import Optional


class ConfigError(Exception):
    """
    A configuration problem, located at a file and line when known.

    @ivar message: what is wrong, without the location.
    @ivar filename: the config file, or C{None} when not tied to one.
    @ivar line: 1-based line number, or C{None}.
    """

    def __init__(
        self, message: str, filename: Optional[str] = None, line: Optional[int] = None
    ) -> None:
        super().__init__(message, filename, line)
        self.message = message
        self.filename = filename
        self.line = line

    def __str__(self) -> str:
        if self.filename is None:
            return self.message
        if self.line is None:
            return f"{self.message} in {self.filename}"
        return f"{self.message} in {self.filename}:{self.line}"
