"""The 6-hourly forecast clock: slots, the J-6 target, the two input times, ISO UTC text."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

STEP_HOURS = 6
CYCLE = timedelta(hours=STEP_HOURS)
INPUT_TIMES_HOURS = (-STEP_HOURS, 0)  # the two input frames relative to T0
INPUT_OFFSETS = tuple(timedelta(hours=h) for h in INPUT_TIMES_HOURS)
MAX_LEAD_HOURS = 240  # the published models were trained for 10-day rollouts


def as_utc(when: datetime) -> datetime:
    """`when` as an aware UTC datetime (naive values are taken as UTC); ValueError when its
    offset moves it before year 1 or after year 9999 (0001-01-01T00:00+01:00)."""
    if when.tzinfo is None:
        return when.replace(tzinfo=timezone.utc)
    try:
        return when.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError(f"{when.isoformat()} is outside the years 1 to 9999 in UTC") from None


def floor_to_cycle(when: datetime) -> datetime:
    """`when` in UTC, floored to its 6-hourly slot (00, 06, 12, 18 UTC)."""
    when = as_utc(when)
    return when.replace(hour=when.hour - when.hour % STEP_HOURS, minute=0, second=0,
                        microsecond=0)


def target_init_time(now: datetime, lag_days: int) -> datetime:
    """The cycle to forecast: `now` floored to its 6-hourly slot, minus `lag_days` ("J-6")."""
    return floor_to_cycle(now) - timedelta(days=lag_days)


def earlier_cycles(init_time: datetime, count: int) -> list[datetime]:
    """The `count` cycles before `init_time`, oldest first."""
    return [init_time - CYCLE * k for k in range(count, 0, -1)]


def cycles_of_days(until: date, days: int) -> list[datetime]:
    """The 6-hourly init times of the `days` days ending with `until`, oldest first;
    ValueError when they begin before 0001-01-02, as the first one's T-6h input would lie
    before year 1, out of datetime's range."""
    if (until - date.min).days < days:
        raise ValueError(f"the {days} day(s) up to {until} begin before 0001-01-02 (the first "
                         "cycle's inputs, 6 hours before it, would be before year 1)")
    start = datetime(until.year, until.month, until.day, tzinfo=timezone.utc) - timedelta(
        days=days - 1)
    return [start + k * CYCLE for k in range(days * 24 // STEP_HOURS)]


def parse_cycle(text: str) -> datetime:
    """An ISO 8601 time (UTC when no offset is given) on a 6-hourly slot; ValueError saying
    what is wrong otherwise."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 date and time") from None
    when = as_utc(when)
    if when != floor_to_cycle(when):
        raise ValueError(f"{text!r} is not on a 6-hourly slot (00, 06, 12, 18 UTC)")
    return when


def iso_utc(when: datetime) -> str:
    """`2022-01-01T06:00:00Z` (four-digit years: strftime's %Y wrote year 1 as `1`)."""
    return as_utc(when).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def cycles_between(start: datetime, end: datetime) -> list[datetime]:
    """Every cycle from `start` to `end` inclusive (both on 6-hourly slots), oldest first;
    ValueError when END is before START, or START's T-6h input lies before year 1."""
    if end < start:
        raise ValueError(f"END {iso_utc(end)} is before START {iso_utc(start)}")
    if as_utc(start) - datetime.min.replace(tzinfo=timezone.utc) < -min(INPUT_OFFSETS):
        raise ValueError(f"START {iso_utc(start)}: its T-6h input would lie before year 1")
    count = (end - start) // CYCLE
    return [start + k * CYCLE for k in range(count + 1)]
