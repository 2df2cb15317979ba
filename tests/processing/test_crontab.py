"""``@app.crontab``: cron times in a zone (daylight saving both ways), on the app's clock, replaced when redefined.

The schedules are checked as pure functions over real zones, then through
an app under the virtual clock (a replay of events that span the
transition), where a crontab fires at exact virtual moments, between
events, the same way on every run.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytz

import streamnb as faust
from streamnb.errors import ConfigurationError
from streamnb.processing.crontab import Crontab, cron_times, parse_cron, to_zone
from streamnb.testing import test_app, wait_until
from streamnb.transport import open_transport
from streamnb.transport.base import ProducerRecord, TopicSpec

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def local(ts: float, zone: Any) -> str:
    return datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M %Z")


def runs(expr: str, zone: Any, start: float, end: float) -> list[float]:
    out = []
    for when in cron_times(parse_cron(expr), to_zone(zone), start):
        if when > end:
            break
        out.append(when)
    return out


# -- the schedule ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "zone", "day", "expected"),
    [
        # spring forward: 02:00 -> 03:00; a 02:30 job runs once, when the clocks jump
        ("30 2 * * *", BERLIN, (2025, 3, 30), ["2025-03-30 03:00 CEST"]),
        ("30 2 * * *", NEW_YORK, (2025, 3, 9), ["2025-03-09 03:00 EDT"]),
        # fall back: the hour repeats; the job runs once, the first time
        ("30 2 * * *", BERLIN, (2025, 10, 26), ["2025-10-26 02:30 CEST"]),
        ("30 1 * * *", NEW_YORK, (2025, 11, 2), ["2025-11-02 01:30 EDT"]),
    ],
)
def test_a_fixed_time_job_runs_once_on_a_transition_day(expr: str, zone: Any, day: tuple[int, int, int],
                                                         expected: list[str]) -> None:
    start = datetime(*day, tzinfo=zone).timestamp() - 1  # local midnight
    end = (datetime(*day, tzinfo=zone) + timedelta(days=1)).timestamp() - 1  # (wall-clock arithmetic: next midnight)
    assert [local(t, zone) for t in runs(expr, zone, start, end)] == expected
    # and on the days around it, once a day as well
    week = runs(expr, zone, start - 3 * 86400, end + 3 * 86400)
    assert len(week) == 7 and all(b - a >= 22 * 3600 for a, b in zip(week, week[1:]))


def test_hourly_and_half_hourly_jobs_keep_real_time_across_both_transitions() -> None:
    # The fall-back day has 25 hours: an hourly job runs 25 times, half-hourly 50 times.
    fall = runs("0 * * * *", BERLIN, utc(2025, 10, 25, 22) - 1, utc(2025, 10, 26, 23) - 1)
    assert len(fall) == 25 and all(b - a == 3600 for a, b in zip(fall, fall[1:]))
    spring = runs("*/30 * * * *", NEW_YORK, utc(2025, 3, 9, 5) - 1, utc(2025, 3, 10, 4) - 1)
    assert len(spring) == 46 and all(b - a == 1800 for a, b in zip(spring, spring[1:]))


@pytest.mark.parametrize(("expr", "zone", "day"), [
    ("30 2 * * *", BERLIN, (2025, 3, 30)), ("30 2 * * *", BERLIN, (2025, 10, 26)),
    ("30 1 * * *", NEW_YORK, (2025, 11, 2)), ("30 2 * * *", NEW_YORK, (2025, 3, 9)),
    ("15,45 1-3 * * *", BERLIN, (2025, 10, 26)),
])
def test_starting_at_any_moment_of_a_transition_day_never_runs_a_time_twice(expr: str, zone: Any,
                                                                           day: tuple[int, int, int]) -> None:
    # An app (re)started every 5 minutes through the day, each time asking for its next run:
    # it gets the next of the times a single uninterrupted run gives, never one already passed.
    midnight = datetime(*day, tzinfo=zone).timestamp()
    uninterrupted = runs(expr, zone, midnight - 1, midnight + 2 * 86400)
    spec, tz = parse_cron(expr), to_zone(zone)
    for start in range(int(midnight), int(midnight + 86400), 300):
        first = next(cron_times(spec, tz, start))
        assert first == min(t for t in uninterrupted if t > start), local(start, zone)


def test_six_fields_have_the_seconds_last_as_in_faust() -> None:
    start = utc(2025, 1, 1)
    assert runs("* * * * * */20", "UTC", start, start + 60) == [start + 20, start + 40, start + 60]
    assert runs("0 * * * * 30", "UTC", start, start + 7200) == [start + 30, start + 3630]
    assert runs("@hourly", "UTC", start, start + 7200) == [start + 3600, start + 7200]
    # the seconds of the current minute still count
    assert next(cron_times(parse_cron("* * * * * 50"), UTC, start + 10)) == start + 50


def test_pytz_zoneinfo_and_names_give_the_same_times() -> None:
    start = utc(2025, 3, 29)
    expected = runs("30 2 * * *", BERLIN, start, start + 5 * 86400)
    assert runs("30 2 * * *", pytz.timezone("Europe/Berlin"), start, start + 5 * 86400) == expected
    assert runs("30 2 * * *", "Europe/Berlin", start, start + 5 * 86400) == expected
    assert to_zone(pytz.utc) == ZoneInfo("UTC")
    assert runs("0 12 * * *", pytz.FixedOffset(120), start, start + 86400) == [utc(2025, 3, 29, 10)]


@pytest.mark.parametrize(("expr", "message"), [
    ("61 * * * *", r"bad cron expression '61 \* \* \* \*': bad minute"),
    ("0 25 * * *", "bad hour"),
    ("* * *", "3 field.*expected 5 or 6"),
    ("0 0 * * * * 2030", "years .* not supported"),
    ("0 0 30 2 *", "bad day-of-month"),
    ("* * * * * 75", "bad second"),
    ("H * * * *", "bad minute"),
])
def test_a_bad_expression_is_a_configuration_error_at_decoration_time(expr: str, message: str) -> None:
    app = test_app()

    async def job() -> None:
        pass

    with pytest.raises(ConfigurationError, match=rf"crontab 'job': .*{message}"):
        app.crontab(expr)(job)
    assert "job" not in app.timers


def test_a_bad_zone_is_a_configuration_error_at_decoration_time() -> None:
    app = test_app()

    async def job() -> None:
        pass

    with pytest.raises(ConfigurationError, match="crontab 'job': unknown time zone 'Europe/Atlantis'"):
        app.crontab("0 * * * *", timezone="Europe/Atlantis")(job)
    with pytest.raises(ConfigurationError, match="timezone must be a zone name"):
        app.crontab("0 * * * *", tz=3600)(job)
    with pytest.raises(ConfigurationError, match="not both"):
        app.crontab("0 * * * *", timezone="UTC", tz="Europe/Berlin")(job)
    with pytest.raises(ConfigurationError, match="async def"):
        app.crontab("0 * * * *")(print)


def test_the_zone_defaults_to_app_conf_timezone_which_is_utc() -> None:
    async def job() -> None:
        pass

    app = test_app()
    assert app.conf.timezone == UTC
    app.crontab("0 7 * * *")(job)
    assert app.timers["job"].schedule == "cron '0 7 * * *' in UTC"
    berlin = test_app(timezone="Europe/Berlin")
    berlin.crontab("0 7 * * *")(job)
    assert berlin.timers["job"].schedule == "cron '0 7 * * *' in Europe/Berlin"
    berlin.crontab("0 7 * * *", tz=pytz.timezone("US/Eastern"), name="east")(job)  # Faust's examples spell it tz=
    assert berlin.timers["east"].schedule == "cron '0 7 * * *' in US/Eastern"


class _FakeClock:
    virtual = False
    gate = None

    def __init__(self) -> None:
        self.time = 0.0

    def now(self) -> float:
        return self.time

    async def sleep_until(self, when: float) -> None:
        await asyncio.sleep(0)
        self.time = max(self.time, when)


class _Host:
    def __init__(self) -> None:
        self.clock = _FakeClock()

    def is_leader(self) -> bool:
        return True


async def test_times_that_passed_during_a_long_run_are_skipped_and_counted() -> None:
    host = _Host()
    seen: list[float] = []

    async def slow() -> None:
        seen.append(host.clock.time)
        host.clock.time += 150  # the run takes two and a half minutes

    job = Crontab(host, slow, "* * * * *", name="slow")
    job.start()
    await wait_until(lambda: len(seen) >= 3, what="three runs")
    await job.stop()
    assert seen[:3] == [60, 240, 420] and job.missed >= 4


# -- in an app ---------------------------------------------------------------------------------------------


async def write_events(url: str, start: float, count: int, step: float) -> None:
    """``count`` events on two partitions of ``events``, one every ``step`` s from ``start``."""
    transport = open_transport(url, client_id="writer")
    await transport.start()
    await transport.create_topic(TopicSpec("events", 2))
    await transport.send([
        ProducerRecord("events", i % 2, None, str(i).encode(), start + i * step) for i in range(count)
    ])
    await transport.stop()


def replay_app(url: str, log: list[Any], cron: str, zone: Any, **options: Any) -> faust.App:
    app = faust.App(f"cron-{uuid.uuid4().hex[:6]}", broker=url, clock="virtual", topic_partitions=2)
    events = app.topic("events", partitions=2, value_serializer="raw")
    seen = app.Table("seen", default=int)

    @app.agent(events)
    async def count(stream: Any) -> None:
        async for _ in stream:
            seen["n"] += 1

    @app.crontab(cron, timezone=zone, **options)
    async def job() -> None:
        log.append((app.now(), seen.data.get("n", 0)))

    return app


@pytest.mark.parametrize(("cron", "zone", "start"), [
    ("30 2 * * *", "Europe/Berlin", utc(2025, 3, 29, 12)),  # spring forward on the 30th
    ("30 1 * * *", "America/New_York", utc(2025, 11, 1, 12)),  # fall back on the 2nd
])
async def test_under_the_virtual_clock_a_crontab_fires_at_its_times_between_events_the_same_every_run(
    cron: str, zone: str, start: float
) -> None:
    url = f"memory://cron-{uuid.uuid4().hex[:8]}"
    step, count = 600.0, 6 * 24 * 3  # an event every 10 minutes for three days
    await write_events(url, start, count, step)
    logs = []
    for _ in range(2):
        log: list[Any] = []
        app = replay_app(url, log, cron, zone)
        async with app:
            await app.clock.idle(timeout=60)
            assert app.timers["job"].runs == len(log)
        logs.append(log)
    assert logs[0] == logs[1]
    fired = [when for when, _n in logs[0]]
    last_event = start + (count - 1) * step
    expected = runs(cron, zone, start, last_event)
    assert len(expected) == 3  # once a day, the transition day included
    # The clock's last stop is the first time due after the last event (it covers the recording's tail), as for timers.
    assert fired == [*expected, next(cron_times(parse_cron(cron), to_zone(zone), last_event))]
    days = Counter(datetime.fromtimestamp(t, ZoneInfo(zone)).date() for t in fired)
    assert set(days.values()) == {1}
    for when, processed in logs[0]:
        # every event up to the crontab's time was processed before it ran, and none after it
        assert processed == sum(1 for i in range(count) if start + i * step <= when)


async def test_on_leader_crontabs_run_on_the_leader_and_are_skipped_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"memory://cron-{uuid.uuid4().hex[:8]}"
    start = utc(2025, 6, 1)
    await write_events(url, start, 60, 60.0)  # an hour of events
    log: list[Any] = []
    app = replay_app(url, log, "*/10 * * * *", None, on_leader=True)
    async with app:
        await app.clock.idle(timeout=60)
    assert [when for when, _ in log] == [start + 600 * k for k in range(1, 7)]  # the last covers minutes 50..59
    follower_log: list[Any] = []
    follower = replay_app(url, follower_log, "*/10 * * * *", None, on_leader=True)
    monkeypatch.setattr(follower, "is_leader", lambda: False)
    async with follower:
        await follower.clock.idle(timeout=60)
    assert follower_log == [] and follower.timers["job"].skipped == 6


async def test_redefining_a_crontab_replaces_it_on_a_running_app() -> None:
    app = test_app()
    runs_of: Counter[str] = Counter()

    async with app:
        @app.crontab("* * * * * *", name="job")  # every second
        async def first() -> None:
            runs_of["first"] += 1

        await wait_until(lambda: runs_of["first"] >= 1, what="the first definition ran")
        old = app.timers["job"]
        assert old.next_run is not None and old.next_run > app.now() - 1

        @app.crontab("* * * * * *", name="job")
        async def second() -> None:
            runs_of["second"] += 1

        await wait_until(lambda: runs_of["second"] >= 1, what="the second definition ran")
        assert not old.running and app.timers["job"] is not old
        before = runs_of["first"]
        await wait_until(lambda: runs_of["second"] >= 2, what="the second ran again")
        assert runs_of["first"] == before  # the first is gone
