#!/usr/bin/env python3
"""Print every skipped test with its reason and fail on a reason not allowed below.

A skip passes silently in pytest's exit code, so a test that skips because of a bug (a
fixture that cannot start, a wrong path) would hide the failure. Run pytest with
`--junitxml=FILE`, then `python scripts/check_skips.py FILE`: exit 0 when every skip
matches ALLOWED, 1 otherwise (each offender named), 2 when FILE cannot be read.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

# Reasons a test may skip, each with why that is acceptable: the machine lacks something
# the test needs that the project cannot provide, never a failure of the project itself.
ALLOWED: tuple[tuple[str, str], ...] = (
    (r"no crontab command",
     "OS capability: cron is not installed (.ci/run installs it where it can)"),
    (r"needs root and unshare|no private mount namespace here",
     "OS capability: a private mount namespace (root + unshare) keeps the real crontab safe"),
    (r"no cron spool directory found", "OS capability: cron without a spool directory"),
    (r"systemd-analyze not installed", "OS capability: the timer unit check needs systemd"),
    (r"the demo test copies the project's files with git",
     "no git checkout (e.g. a source archive): the demo test copies tracked files"),
    (r"POSIX permission bits", "OS capability: Windows has no umask or mode bits"),
    (r"this CPU has no AMX",
     "hardware: the AMX edge kernel runs only on CPUs with AMX tiles; its packing, argument "
     "checks, fallback and refusal run on every host"),
)


@dataclass(frozen=True)
class Skip:
    test: str
    reason: str


def skips(junit_xml: Path) -> list[Skip]:
    """Every skipped test case in a pytest junit XML report."""
    found = []
    for case in ElementTree.parse(junit_xml).getroot().iter("testcase"):
        for skipped in case.findall("skipped"):
            test = f"{case.get('classname', '')}::{case.get('name', '')}"
            found.append(Skip(test, skipped.get("message") or (skipped.text or "").strip()))
    return found


def why_allowed(reason: str) -> str | None:
    """Why a skip for `reason` is acceptable, or None when it is not."""
    for pattern, why in ALLOWED:
        if re.search(pattern, reason):
            return why
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: check_skips.py JUNIT_XML", file=sys.stderr)
        return 2
    try:
        found = skips(Path(argv[0]))
    except (OSError, ElementTree.ParseError) as exc:
        print(f"check_skips: cannot read {argv[0]}: {exc}", file=sys.stderr)
        return 2
    refused = 0
    print(f"{len(found)} skipped test(s)")
    for skip in found:
        why = why_allowed(skip.reason)
        verdict = f"allowed ({why})" if why else "NOT ALLOWED"
        refused += why is None
        print(f"  {skip.test}: {skip.reason}\n    -> {verdict}")
    if refused:
        print(f"{refused} test(s) skipped for a reason not on the allow-list "
              "(scripts/check_skips.py ALLOWED)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
