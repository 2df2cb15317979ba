"""Crontabs: run a function at the times a cron expression gives, in a time zone (Faust's ``@app.crontab``).

Example::

    @app.crontab("0 19 * * *", timezone="America/New_York")
    async def evening_report():
        print(totals.as_ansitable())

A crontab is a :class:`~streamnb.processing.tasks.Timer` whose times come
from a cron expression instead of an interval: it waits on the app's clock
the same way (so under ``clock="virtual"`` it fires at virtual times, after
every event up to then and before any later one), it lives in
``app.timers`` under its name (defining it again replaces it), and
``on_leader=True`` runs it on one worker only.

The expression is read as Faust (croniter) reads it: five fields
``minute hour day-of-month month day-of-week``, or six with the *seconds
last*; ``@hourly``, ``@daily``, ``@midnight``, ``@weekly``, ``@monthly``,
``@yearly`` and ``@annually`` stand for their five fields. The times are
computed by `cronsim <https://pypi.org/project/cronsim/>`_, which follows
Debian's cron, daylight-saving transitions included: a job at a fixed time
(minute and hour fields without ``*``) that falls into the hour skipped in
spring runs once, when the clocks jump (02:30 runs at 03:00); one in the
hour repeated in autumn runs once, the first time; jobs that run every
hour or more often keep their real-time rhythm across both transitions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from datetime import timezone as fixed_offset
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from ..errors import ConfigurationError
from .tasks import Task, TaskHost, Timer

__all__ = ["CronSpec", "Crontab", "cron_times", "parse_cron", "to_zone"]

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""The ``@`` shorthands croniter (and so Faust) accepts, as five fields."""

_FIELDS = "minute hour day-of-month month day-of-week [second]"
_EPOCH_MINUTE = datetime(2000, 1, 1, tzinfo=UTC)


class CronSpec(NamedTuple):
    """A cron expression, checked and split the way :func:`cron_times` uses it."""

    minutes: str
    """The five minute-level fields (``minute hour day-of-month month day-of-week``)."""
    seconds: tuple[int, ...]
    """The seconds of each matching minute to run at: ``(0,)`` for a five-field expression."""


def parse_cron(expression: str) -> CronSpec:
    """Check a cron expression (Faust's reading: five fields, or six with the seconds last).

    >>> parse_cron("*/15 9-17 * * MON-FRI")
    CronSpec(minutes='*/15 9-17 * * MON-FRI', seconds=(0,))
    >>> parse_cron("* * * * * */20").seconds
    (0, 20, 40)
    >>> parse_cron("61 * * * *")
    Traceback (most recent call last):
    ...
    streamnb.errors.ConfigurationError: bad cron expression '61 * * * *': bad minute ...
    """
    if not isinstance(expression, str):
        raise ConfigurationError(f"a cron expression is a string such as '0 19 * * *', got {expression!r}")
    text = MACROS.get(expression.strip().lower(), expression)
    fields = text.split()
    if len(fields) not in (5, 6):
        more = "; years (a seventh field) are not supported" if len(fields) == 7 else ""
        raise ConfigurationError(
            f"bad cron expression {expression!r}: {len(fields)} field(s), expected 5 or 6 ({_FIELDS}){more}"
        )
    minutes = " ".join(fields[:5])
    try:
        CronSim(minutes, _EPOCH_MINUTE)
        seconds = (0,) if len(fields) == 5 else _seconds_of(fields[5])
    except CronSimError as exc:
        reason = str(exc)
        raise ConfigurationError(
            f"bad cron expression {expression!r}: {reason[:1].lower()}{reason[1:]} (the fields are {_FIELDS})"
        ) from None
    return CronSpec(minutes, seconds)


def _seconds_of(field: str) -> tuple[int, ...]:
    """The seconds of a minute that a seconds field matches (cronsim reads seconds first)."""
    it = CronSim(f"{field} * * * * *", _EPOCH_MINUTE - timedelta(seconds=1))
    found: list[int] = []
    for when in it:
        offset = int((when - _EPOCH_MINUTE).total_seconds())
        if offset >= 60:
            break
        found.append(offset)
    return tuple(found)


def to_zone(zone: Any) -> tzinfo:
    """The ``tzinfo`` for a zone: ``None`` (UTC), a name, a ``zoneinfo`` or ``pytz`` zone, or any ``tzinfo``.

    pytz zones become the ``zoneinfo`` zone of the same name (pytz's own give
    wrong offsets in ordinary ``datetime`` arithmetic).

    >>> to_zone("Europe/Berlin")
    zoneinfo.ZoneInfo(key='Europe/Berlin')
    >>> to_zone(None)
    datetime.timezone.utc
    >>> to_zone("Mars/Olympus_Mons")
    Traceback (most recent call last):
    ...
    streamnb.errors.ConfigurationError: unknown time zone 'Mars/Olympus_Mons': ...
    """
    if zone is None:
        return UTC
    if isinstance(zone, str):
        try:
            return ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigurationError(
                f"unknown time zone {zone!r}: give an IANA name such as 'Europe/Berlin', 'America/New_York' or 'UTC'"
            ) from None
    if isinstance(zone, tzinfo):
        if hasattr(zone, "localize"):  # a pytz zone
            name = getattr(zone, "zone", None)
            if name:
                return to_zone(str(name))
            offset = zone.utcoffset(None)
            if offset is not None:  # pytz.FixedOffset
                return fixed_offset(offset)
        return zone
    raise ConfigurationError(
        f"timezone must be a zone name ('Europe/Berlin'), a zoneinfo.ZoneInfo, a pytz zone or a tzinfo, got {zone!r}"
    )


def cron_times(spec: CronSpec, zone: tzinfo, start: float) -> Iterator[float]:
    """The times (epoch seconds) after ``start`` that ``spec`` gives in ``zone``, in order; none twice.

    >>> from datetime import datetime, timezone
    >>> start = datetime(2025, 3, 29, 12, tzinfo=timezone.utc).timestamp()
    >>> times = cron_times(parse_cron("30 2 * * *"), to_zone("Europe/Berlin"), start)
    >>> [datetime.fromtimestamp(next(times), to_zone("Europe/Berlin")).isoformat() for _ in range(2)]
    ['2025-03-30T03:00:00+02:00', '2025-03-31T02:30:00+02:00']
    """
    local = datetime.fromtimestamp(start, zone)
    # From just before the minute holding ``start``: its later seconds may still be due.
    minute = start - local.second - local.microsecond / 1e6
    last = start
    for when in CronSim(spec.minutes, datetime.fromtimestamp(minute - 1, zone)):
        base = when.timestamp()
        for second in spec.seconds:
            due = base + second
            if due > last:  # (cronsim may answer a time before a start inside a repeated hour)
                last = due
                yield due


class Crontab(Timer):
    """Runs ``async def f()`` or ``f(app)`` at each time a cron expression gives in ``timezone``.

    A run that fails is logged and kept in ``last_error``; the crontab goes
    on. A time that passed while the previous run was still going (on the
    wall clock) is skipped and counted in :attr:`missed`, as in Faust.

    >>> from streamnb import App
    >>> app = App("demo", broker="memory://")
    >>> async def report():
    ...     pass
    >>> job = Crontab(app, report, "0 19 * * *", name="report", timezone="America/New_York")
    >>> job.schedule
    "cron '0 19 * * *' in America/New_York"
    >>> summer = datetime(2025, 7, 1, 12, tzinfo=UTC).timestamp()
    >>> datetime.fromtimestamp(job.next_after(summer), UTC).isoformat()  # 19:00 EDT
    '2025-07-01T23:00:00+00:00'
    """

    def __init__(
        self,
        app: TaskHost,
        fun: Callable[..., Any],
        cron: str,
        *,
        name: str,
        timezone: Any = None,
        on_leader: bool = False,
    ) -> None:
        Task.__init__(self, app, fun, name=name)
        try:
            self.spec = parse_cron(cron)
            self.timezone = to_zone(timezone)
        except ConfigurationError as exc:
            raise ConfigurationError(f"crontab {name!r}: {exc}") from None
        self.cron = cron
        """The cron expression, as given."""
        self.interval = None
        self._init_counters(on_leader)
        self.missed = 0
        """Times skipped because the run before was still going."""
        if math.isinf(self.next_after(datetime.now(UTC).timestamp())):
            raise ConfigurationError(f"crontab {name!r}: {cron!r} gives no time in the next 50 years")

    def next_after(self, when: float) -> float:
        """The first time after ``when`` (epoch seconds) the crontab runs at; ``inf`` if none in 50 years."""
        return next(cron_times(self.spec, self.timezone, when), math.inf)

    @property
    def schedule(self) -> str:
        """The expression and zone (what the dashboard shows)."""
        return f"cron {self.cron!r} in {_zone_name(self.timezone)}"

    def _times(self, start: float) -> Iterator[float]:
        clock = self.app.clock
        for due in cron_times(self.spec, self.timezone, start):
            if due < clock.now():
                self.missed += 1
                continue
            yield due


def _zone_name(zone: tzinfo) -> str:
    """``Europe/Berlin``, ``UTC``, or what the zone calls itself.

    >>> _zone_name(UTC), _zone_name(ZoneInfo("Europe/Berlin"))
    ('UTC', 'Europe/Berlin')
    """
    key = getattr(zone, "key", None)
    return str(key) if key else str(zone.tzname(None) or zone)
