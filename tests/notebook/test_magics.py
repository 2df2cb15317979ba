"""The magics, through a real IPython InteractiveShell (the kernel's own machinery, minus ZMQ)."""

from __future__ import annotations

import asyncio
import inspect

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from nbhelpers import Shell, memory_url, shell_fixture

import streamnb
from streamnb.notebook.dashboard import Dashboard
from streamnb.notebook.magics import Pending
from streamnb.notebook.peek import LivePeek
from streamnb.notebook.views import LiveTable
from streamnb.testing import settle, wait_until
from streamnb.transport.base import TP, ProducerRecord

ipy = shell_fixture


APP_CELL = """
import asyncio
import streamnb

class PageView(streamnb.Record):
    user: str
    page: str

app = streamnb.App("magics", broker="{url}", topic_partitions=4)
views = app.topic("views", value_type=PageView)
counts = app.Table("counts", default=int)

@app.agent(views)
async def count(stream):
    async for view in stream:
        if view.page == "/boom":
            raise ValueError("boom\\nsecond line")
        counts[view.page] += 1
"""


async def make_app(ipy: Shell, start: bool = True) -> streamnb.App:
    await ipy.ok(APP_CELL.replace("{url}", memory_url()))
    if start:
        await ipy.ok("%streamnb start")
    return ipy.ns["app"]


async def usage_error(ipy: Shell, cell: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Run a cell that must fail with a one-line UsageError; return the message."""
    capsys.readouterr()
    result = await ipy.run(cell)
    assert isinstance(result.error_in_exec, UsageError), (cell, result.error_in_exec)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("UsageError: ")
    return str(result.error_in_exec)


async def ends(app: streamnb.App, name: str = "views") -> int:
    assert app.transport is not None
    tps = [TP(name, p) for p in range(app.topics[name].partition_count)]
    return sum((await app.transport.end_offsets(tps)).values())


# -- %streamnb ---------------------------------------------------------------------------------


async def test_start_waits_until_running_and_stop_until_stopped(ipy: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    app = await make_app(ipy, start=False)
    assert app.state == "init"
    await ipy.ok("%streamnb start")
    assert app.state == "running"  # the cell waited for app.start()
    assert ipy.ns["count"].running
    assert "app 'magics' running on memory://" in capsys.readouterr().out
    await ipy.ok("%streamnb start")
    assert "already running" in capsys.readouterr().out
    await ipy.ok("%streamnb stop")
    assert app.state == "stopped"
    assert not ipy.ns["count"].running
    assert "stopped" in capsys.readouterr().out
    await ipy.ok("%streamnb stop")
    assert "not running" in capsys.readouterr().out
    await ipy.ok("%streamnb start")  # and again
    assert app.state == "running"


async def test_status_prints_agents(ipy: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    app = await make_app(ipy)
    await ipy.ok(
        '%%produce views\n{"user": "a", "page": "/"}\n{"user": "b", "page": "/boom"}\n{"user": "c", "page": "/"}'
    )
    count = ipy.ns["count"]
    await wait_until(lambda: count.dead_lettered == 1, timeout=20)
    await settle(app)
    capsys.readouterr()
    await ipy.ok("%streamnb status")
    out = capsys.readouterr().out
    assert "app 'magics' running" in out
    line = next(row for row in out.splitlines() if row.startswith("| count"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[0] == "count"
    assert cells[1] == "running"
    assert cells[2] == "3"  # processed, the dead-lettered one included
    float(cells[3].replace(",", ""))  # events/s
    assert cells[4] == "1"  # dead-lettered
    assert cells[5] == str(count.crashes) and count.crashes >= 3
    # the last problem, on one line: the event that crashed the agent three times was dead-lettered
    assert cells[6].startswith("dead-lettered views[") and cells[6].endswith(": ValueError: boom second line")
    for header in ("agent", "state", "processed", "events/s", "dead-lettered", "last error"):
        assert header in out


async def test_dead_letters_show_their_reason_in_status_and_peek(
    ipy: Shell, capsys: pytest.CaptureFixture[str]
) -> None:
    app = await make_app(ipy)
    assert app.transport is not None
    await ipy.ok('%%produce views\n{"user": "a", "page": "/"}')
    # Another producer writes a view without its page: the agent cannot read it and dead-letters it.
    await app.transport.send([ProducerRecord("views", 2, b"b", b'{"user": "b"}', 5.0)])
    count = ipy.ns["count"]
    await wait_until(lambda: count.dead_lettered == 1, timeout=20)
    await settle(app)
    capsys.readouterr()
    await ipy.ok("%streamnb status")
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith("| count"))
    last = line.strip("|").split("|")[6].strip()
    assert last.startswith("dead-lettered views[2]@0: ValidationError: ") and "page" in last, last
    assert count.crashes == 0
    dlq = app.dead_letter_topic("count").name
    df = await ipy.ok(f"%peek {dlq}")
    assert list(df.columns) == ["partition", "offset", "timestamp", "key", "value", "reason", "origin"]
    assert df["origin"].tolist() == ["views[2]@0"]
    assert df["reason"].iloc[0].startswith("ValidationError: ") and "page" in df["reason"].iloc[0]
    assert df["value"].tolist() == [{"user": "b"}]


async def test_status_of_a_stopped_agent_and_no_agents(ipy: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    await make_app(ipy, start=False)
    capsys.readouterr()
    await ipy.ok("%streamnb status")
    out = capsys.readouterr().out
    assert "app 'magics' init" in out and "| count | stopped" in out
    await ipy.ok(f"other = streamnb.App('empty', broker='{memory_url()}')")
    await ipy.ok("%streamnb status --app other")
    assert "(no agents)" in capsys.readouterr().out


async def test_dashboard_and_table_magics_return_live_widgets(ipy: Shell) -> None:
    app = await make_app(ipy)
    await ipy.ok(
        '%%produce views\n{"user": "a", "page": "/"}\n{"user": "b", "page": "/x"}\n{"user": "c", "page": "/x"}'
    )
    await settle(app)
    board = await ipy.ok("%streamnb dashboard")
    assert isinstance(board, Dashboard) and board.running
    view = await ipy.ok("%streamnb table counts --top 1 --sort-by value")
    assert isinstance(view, LiveTable)
    assert view.dataframe().to_dict("records") == [{"key": "/x", "value": 2}]
    view2 = await ipy.ok("%streamnb table counts --filter x --sort-by value --ascending")
    assert list(view2.dataframe()["key"]) == ["/x"]
    for widget in (board, view, view2):
        widget.close()
        assert not widget.running


async def test_table_magic_errors(ipy: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    await make_app(ipy)
    assert "no table 'nope' in app 'magics' (tables: counts)" in await usage_error(ipy, "%streamnb table nope", capsys)
    assert "needs a table name" in await usage_error(ipy, "%streamnb table", capsys)
    assert "no column 'bogus'" in await usage_error(ipy, "%streamnb table counts --sort-by bogus", capsys)
    assert "--top must be at least 1" in await usage_error(ipy, "%streamnb table counts --top 0", capsys)
    assert "takes no table name" in await usage_error(ipy, "%streamnb status counts", capsys)


async def test_which_app(ipy: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    message = await usage_error(ipy, "%streamnb status", capsys)
    assert message.startswith("no streamnb.App in this notebook")
    await ipy.ok(f"a1 = streamnb.App('one', broker='{memory_url()}')" if "streamnb" in ipy.ns else
                 f"import streamnb\na1 = streamnb.App('one', broker='{memory_url()}')")
    await ipy.ok("alias = a1\n_hidden = a1")  # the same app under several names is still one app
    await ipy.ok("%streamnb status")
    assert "app 'one'" in capsys.readouterr().out
    await ipy.ok(f"a2 = streamnb.App('two', broker='{memory_url()}')")
    message = await usage_error(ipy, "%streamnb status", capsys)
    assert "2 streamnb.App instances (a1, a2)" in message and "--app NAME" in message
    await ipy.ok("%streamnb status --app a2")
    assert "app 'two'" in capsys.readouterr().out
    assert "no variable 'nothere'" in await usage_error(ipy, "%streamnb status --app nothere", capsys)
    await ipy.ok("x = 3")
    assert "is a int, not a streamnb.App" in await usage_error(ipy, "%streamnb status --app x", capsys)


@pytest.mark.parametrize(
    ("cell", "usage"),
    [
        ("%streamnb", "usage: %streamnb"),
        ("%streamnb bogus", "usage: %streamnb"),
        ("%streamnb start --nope", "usage: %streamnb"),
        ("%peek", "usage: %peek"),
        ("%peek views -n many", "usage: %peek"),
        ("%%produce\n{}", "usage: %produce"),
        ("%%produce views --bogus\n{}", "usage: %produce"),
    ],
)
async def test_wrong_arguments_print_the_usage(
    ipy: Shell, capsys: pytest.CaptureFixture[str], cell: str, usage: str
) -> None:
    app = await make_app(ipy)
    message = await usage_error(ipy, cell, capsys)
    assert usage in message
    assert "\n" not in message
    assert app.state == "running" and ipy.ns["count"].running  # nothing disturbed


# -- %peek ----------------------------------------------------------------------------------------


async def test_peek_shows_the_last_messages_decoded(ipy: Shell) -> None:
    app = await make_app(ipy)
    lines = "\n".join(f'{{"user": "u{i}", "page": "/p{i}"}}' for i in range(12))
    await ipy.ok(f"%%produce views --key user\n{lines}")
    df = await ipy.ok("%peek views -n 5")
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["partition", "offset", "timestamp", "key", "value"]
    assert len(df) == 5
    assert list(df["key"]) == [f"u{i}" for i in range(7, 12)]  # the last five, oldest first
    value = df["value"].iloc[-1]
    assert isinstance(value, ipy.ns["PageView"]) and value.page == "/p11"  # decoded with the topic's codecs
    assert str(df["timestamp"].dtype).startswith("datetime64")
    default = await ipy.ok("%peek views")
    assert len(default) == 10
    assert await ends(app) == 12  # peeking reads, it does not consume or produce


async def test_peek_topic_not_defined_in_the_app_is_decoded_best_effort(ipy: Shell) -> None:
    app = await make_app(ipy)
    assert app.transport is not None
    await app.transport.create_topic(streamnb.transport.base.TopicSpec("external", 1))
    await app.transport.send([
        ProducerRecord("external", 0, b"k1", b'{"a": 1}', 1.0),
        ProducerRecord("external", 0, None, b"plain text", 2.0),
        ProducerRecord("external", 0, b"\xff", b"\xff\xfe", 3.0),
    ])
    df = await ipy.ok("%peek external")
    assert df["key"].tolist() == ["k1", None, b"\xff"]
    assert df["value"].tolist() == [{"a": 1}, "plain text", b"\xff\xfe"]
    assert df["offset"].tolist() == [0, 1, 2]


async def test_peek_errors(ipy: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    app = await make_app(ipy, start=False)
    message = await usage_error(ipy, "%peek views", capsys)
    assert "not running" in message and "await app.start()" in message and "%streamnb start" in message
    await ipy.ok("%streamnb start")
    assert "no topic 'nope'" in await usage_error(ipy, "%peek nope", capsys)
    assert "no topic 'nope'" in await usage_error(ipy, "%peek nope --live", capsys)
    assert "-n must be at least 1" in await usage_error(ipy, "%peek views -n 0", capsys)
    assert app.state == "running" and ipy.ns["count"].running


async def test_peek_live_follows_the_topic(ipy: Shell) -> None:
    app = await make_app(ipy)
    await ipy.ok('%%produce views\n{"user": "a", "page": "/"}')
    widget = await ipy.ok("%peek views -n 3 --live")
    assert isinstance(widget, LivePeek) and widget.running
    await wait_until(lambda: widget.frame is not None and len(widget.frame) == 1, timeout=10)
    first = widget.html.value
    await ipy.ok(
        '%%produce views\n{"user": "b", "page": "/b"}\n{"user": "c", "page": "/c"}\n{"user": "d", "page": "/d"}'
    )
    await wait_until(lambda: widget.frame is not None and widget.frame["value"].iloc[-1].page == "/d", timeout=10)
    assert len(widget.frame) == 3 and widget.html.value != first
    assert "views: last 3 of 4 offsets" in widget.label.value
    await app.stop()
    await wait_until(lambda: not widget.running, timeout=5)
    assert widget.stopped == "app stopped"


# -- %%produce ----------------------------------------------------------------------------------


async def test_produce_sends_each_line(ipy: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    app = await make_app(ipy)
    capsys.readouterr()
    await ipy.ok(
        '%%produce views\n{"user": "a", "page": "/"}\n\n   \n{"user": "b", "page": "/"}\n{"user": "c", "page": "/x"}\n'
    )
    assert "sent 3 messages to views" in capsys.readouterr().out
    await settle(app)
    assert dict(ipy.ns["counts"]) == {"/": 2, "/x": 1}
    df = await ipy.ok("%peek views")
    assert df["key"].isna().all()


async def test_produce_key_from_a_field(ipy: Shell) -> None:
    app = await make_app(ipy)
    await ipy.ok('%%produce views --key user\n{"user": "alice", "page": "/"}\n{"user": "alice", "page": "/x"}')
    df = await ipy.ok("%peek views")
    assert df["key"].tolist() == ["alice", "alice"]
    expected = streamnb.topics.partition_for_key(b"alice", app.topics["views"].partition_count)
    assert set(df["partition"]) == {expected}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"user": "a", "page": "/"}\n{"user": "b", page: "/"}\n{"user": "c", "page": "/"}', "line 2: invalid JSON"),
        ('{"user": "a", "page": "/"}\n\n{"user": "b"', "line 3: invalid JSON"),
        ('{"user": "a", "page": "/"}\n[1, 2]', "line 2: PageView needs a JSON object"),
        ('{"user": "a", "page": "/"}\n{"user": "b"}', "line 2: "),  # validation: page is missing
    ],
)
async def test_produce_bad_line_sends_nothing(
    ipy: Shell, capsys: pytest.CaptureFixture[str], body: str, expected: str
) -> None:
    app = await make_app(ipy)
    message = await usage_error(ipy, f"%%produce views\n{body}", capsys)
    assert message.startswith(expected), message
    assert "\n" not in message
    assert await ends(app) == 0
    assert app.state == "running" and ipy.ns["count"].running


async def test_produce_errors(ipy: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    app = await make_app(ipy, start=False)
    message = await usage_error(ipy, '%%produce views\n{"user": "a", "page": "/"}', capsys)
    assert "not running" in message and "await app.start()" in message and "%streamnb start" in message
    await ipy.ok("%streamnb start")
    message = await usage_error(ipy, '%%produce nope\n{"x": 1}', capsys)
    assert "no topic 'nope' in app 'magics' (topics: views)" in message
    assert "body is empty" in await usage_error(ipy, "%%produce views\n\n  \n", capsys)  # IPython says so
    with pytest.raises(UsageError, match="nothing to send to 'views'"):
        ipy.shell.run_cell_magic("produce", "views", "\n  \n")
    message = await usage_error(ipy, '%%produce views --key id\n{"user": "a", "page": "/"}', capsys)
    assert message.startswith("line 1: --key id: no field 'id'")
    message = await usage_error(ipy, '%%produce views --key user\n{"user": 42, "page": "/"}', capsys)
    assert message.startswith("line 1: ") and "cannot encode key 42" in message
    assert await ends(app) == 0
    # nothing already running was disturbed
    await ipy.ok('%%produce views\n{"user": "a", "page": "/"}')
    await settle(app)
    assert ipy.ns["counts"]["/"] == 1


# -- waiting and not waiting ----------------------------------------------------------------------


async def test_magics_not_on_their_own_line_run_in_the_background(ipy: Shell) -> None:
    app = await make_app(ipy, start=False)
    pending = await ipy.ok("pending = %streamnb start\npending")
    assert isinstance(pending, Pending)
    assert "in the background" in repr(pending) or pending.done()
    await pending
    assert app.state == "running"
    await ipy.ok('%%produce views\n{"user": "a", "page": "/"}')
    df = await ipy.ok("p = %peek views\ndf = await p\ndf")
    assert len(df) == 1
    await ipy.ok("if True:\n    %streamnb stop")  # indented: not awaited by the transformer
    await wait_until(lambda: app.state == "stopped", timeout=10)


async def test_unawaited_magic_reports_its_error(ipy: Shell, capsys: pytest.CaptureFixture[str]) -> None:
    await make_app(ipy)
    capsys.readouterr()
    pending = await ipy.ok("p = %peek nope\np")
    with pytest.raises(UsageError):
        await pending.task
    err: list[str] = []  # reported by the task's done callback, which runs soon after it
    await wait_until(lambda: err.append(capsys.readouterr().err) or "UsageError: no topic 'nope'" in "".join(err))


async def test_interrupting_the_wait_does_not_stop_the_work(ipy: Shell) -> None:
    app = await make_app(ipy, start=False)
    pending = await ipy.ok("p = %streamnb start\np")
    waiter = asyncio.ensure_future(_wait(pending))
    await asyncio.sleep(0)  # one step of the loop: the waiter starts
    assert inspect.getcoroutinestate(waiter.get_coro()) == inspect.CORO_SUSPENDED  # it waits for the magic
    assert not pending.task.done()
    waiter.cancel()  # what a kernel interrupt does to a cell awaiting the magic
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await pending.task
    assert app.state == "running" and ipy.ns["count"].running


async def _wait(pending: Pending) -> None:
    await pending


def test_without_a_running_loop_the_magics_say_so() -> None:

    shell = InteractiveShell.instance()
    shell.reset(new_session=False)
    shell.run_line_magic("load_ext", "streamnb")
    try:
        shell.user_ns["app"] = streamnb.App("noloop", broker=memory_url())
        with pytest.raises(UsageError, match="no running event loop"):
            shell.run_line_magic("streamnb", "start")
    finally:
        shell.run_line_magic("unload_ext", "streamnb")
        shell.reset(new_session=False)


async def test_unload_removes_magics_and_transformer(ipy: Shell) -> None:
    shell = ipy.shell
    assert "streamnb" in shell.magics_manager.magics["line"]
    assert "await " in shell.transform_cell("%streamnb status")
    shell.run_line_magic("unload_ext", "streamnb")
    assert "streamnb" not in shell.magics_manager.magics["line"]
    assert "peek" not in shell.magics_manager.magics["line"]
    assert "produce" not in shell.magics_manager.magics["cell"]
    assert "await" not in shell.transform_cell("%streamnb status")
    shell.run_line_magic("load_ext", "streamnb")
    shell.run_line_magic("reload_ext", "streamnb")
    assert sum(getattr(t, "streamnb", False) for t in shell.input_transformers_post) == 1


async def test_transformer_leaves_other_lines_alone(ipy: Shell) -> None:
    shell = ipy.shell
    assert shell.transform_cell("x = %peek views") == "x = get_ipython().run_line_magic('peek', 'views')\n"
    assert "await" not in shell.transform_cell("%time 1")
    assert "await" not in shell.transform_cell("def f():\n    %streamnb stop\n")
    shell.autoawait = False
    try:
        assert "await" not in shell.transform_cell("%streamnb start")
    finally:
        shell.autoawait = True
