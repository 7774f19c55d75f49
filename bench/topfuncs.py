#!/usr/bin/env python3
# -*- test-case-name: tests.integration.test_bench -*-
"""
Summarise a py-spy profile in collapsed-stack form (C{py-spy record -f raw
-o profile.txt ...}): the functions that take most samples themselves
(self) and counting what they call (inclusive), as a percentage of all
samples.  Prints text meant for notes and docs/benchmarks.md.

    python3 bench/topfuncs.py profile.txt [--top 15]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
"""A py-spy frame: C{function (path/to/file.py:LINE)}."""


def frameName(frame: str, root: str = "") -> str:
    """
    C{function (file)} without the line number and with long paths cut to
    what tells them apart (C{twisted_rproxy/...}, C{twisted/...}).
    """
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match.group("file")
    for marker in ("twisted_rproxy/", "twisted/", "site-packages/", "lib/python3"):
        index = path.find(marker)
        if index >= 0:
            path = path[index:]
            break
    return f"{match.group('func')} ({path})"


def summarise(lines: Iterable[str]) -> Tuple[int, Counter, Counter]:
    """
    Count samples per function from collapsed stacks (C{a;b;c COUNT}).

    @return: (total samples, self counts, inclusive counts).
    """
    total = 0
    own: Counter = Counter()
    inclusive: Counter = Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = [frameName(f) for f in stack.split(";") if f]
        # py-spy puts the thread ("process 123:...") first; skip non-frames.
        frames = [f for f in frames if "(" in f]
        if not frames:
            continue
        total += samples
        own[frames[-1]] += samples
        for name in set(frames):
            inclusive[name] += samples
    return total, own, inclusive


def report(path: Path, top: int) -> str:
    """The text summary of one collapsed-stack file."""
    total, own, inclusive = summarise(path.read_text(encoding="utf-8").splitlines())
    if not total:
        return "no samples"
    out: List[str] = [f"{total} samples", "", f"top {top} by self time:"]
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    out += ["", f"top {top} by inclusive time:"]
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(out)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Print the summary of the file named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path, help="py-spy record -f raw output")
    parser.add_argument("--top", type=int, default=15)
    options = parser.parse_args(argv)
    print(report(options.profile, options.top))


if __name__ == "__main__":
    main()
