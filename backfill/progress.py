"""The backfill's progress bar (tqdm) and its end summary."""
from __future__ import annotations

import logging
import time
from collections import Counter

from tqdm import tqdm

from graphcast_contract.cycles import iso_utc
from graphcast_contract.errors import ExitCode
from modules.job.ledger import RunOutcome

log = logging.getLogger("forecast_job")

LISTED_PER_REASON = 5  # cycles named per skip/failure reason in the summary


class Progress:
    """Cycles done of total, failures, cycles per hour and ETA, on stderr."""

    def __init__(self, total: int) -> None:
        self.started = time.monotonic()
        self.failures = 0
        self.bar = tqdm(total=total, unit="cycle", dynamic_ncols=True,
                        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]"
                                   "{postfix}")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def record(self, outcome: RunOutcome) -> None:
        self.failures += outcome.status == "failed"
        hours = (time.monotonic() - self.started) / 3600
        self.bar.set_postfix_str(f"failed {self.failures}, "
                                 f"{(self.bar.n + 1) / max(hours, 1e-9):.0f} cycles/h",
                                 refresh=False)
        self.bar.update()

    def summary(self, outcomes: list[RunOutcome], not_run: int, interrupted: bool) -> int:
        """Log the summary; return the exit code: INTERRUPTED after Ctrl-C, else the first
        non-zero code in cycle order (as --catch-up does), else 0."""
        outcomes = sorted(outcomes, key=lambda outcome: outcome.init_time)
        counts = Counter(outcome.status for outcome in outcomes)
        hours = (time.monotonic() - self.started) / 3600
        log.info("backfill summary: %d succeeded, %d skipped, %d failed, %d not run; "
                 "%.0f cycles/h", counts["succeeded"], counts["skipped"], counts["failed"],
                 not_run, len(outcomes) / hours if outcomes and hours else 0.0)
        for status in ("skipped", "failed"):
            _log_reasons(status, [o for o in outcomes if o.status == status])
        if interrupted:
            return ExitCode.INTERRUPTED
        return next((o.exit_code for o in outcomes if o.exit_code), ExitCode.OK)


def _log_reasons(status: str, outcomes: list[RunOutcome]) -> None:
    """One line per reason, naming the first cycles it hit."""
    by_reason: dict[str, list[RunOutcome]] = {}
    for outcome in outcomes:
        by_reason.setdefault(outcome.reason or "no reason", []).append(outcome)
    for reason, hit in by_reason.items():
        named = ", ".join(iso_utc(o.init_time) for o in hit[:LISTED_PER_REASON])
        more = f" and {len(hit) - LISTED_PER_REASON} more" if len(hit) > LISTED_PER_REASON else ""
        log.info("  %s %d (%s%s): %s", status, len(hit), named, more, reason)
