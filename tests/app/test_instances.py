"""The Apps of a process: a newer App with the same id and broker (a re-run cell) replaces the older one."""

from __future__ import annotations

import streamnb
from streamnb.testing import wait_until


async def test_a_newer_app_replaces_and_stops_the_running_one(app_id: str) -> None:
    broker = f"memory://{app_id}"
    old = streamnb.App(app_id, broker=broker)
    await old.start()
    assert old.is_current and streamnb.App.current(app_id, broker) is old
    new = streamnb.App(app_id, broker=broker)  # the cell that makes the app, run again
    assert new.is_current and not old.is_current
    assert streamnb.App.current(app_id, broker) is new
    assert new in streamnb.App.instances() and old not in streamnb.App.instances()
    await wait_until(lambda: old.state == "stopped", what="the replaced app stops")
    other = streamnb.App(app_id, broker=f"memory://{app_id}-other")  # another broker: another app
    assert other.is_current and new.is_current


def test_an_app_never_started_is_replaced_without_a_stop(app_id: str) -> None:
    first = streamnb.App(app_id, broker="memory://")
    second = streamnb.App(app_id, broker="memory://")
    assert first.state == "init" and not first.is_current and second.is_current
    assert streamnb.App.current(app_id, "memory://nowhere") is None
