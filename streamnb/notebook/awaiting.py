"""How the notebook magics wait: work scheduled on the kernel's loop, awaited by the cell.

A magic is a plain function, but starting an app, sending or reading needs
``await``. The magics schedule that work as a task on the kernel's running
loop and return it as a :class:`Pending`. While the extension is loaded, a
cell line that is exactly one of streamnb's magics is run as ``await`` of
that result (an IPython input transformer does this, for top-level lines
only), so the cell waits until the app has started, the messages were sent
or the DataFrame was read, and errors show in that cell. Elsewhere (inside
a function, ``x = %peek t``) the work runs in the background and the magic
says so. Interrupting a waiting cell stops the wait, not the work: the app
keeps starting and agents keep running.

Example (in a notebook, with ``%load_ext streamnb``)::

    %streamnb start             # runs as: await wait_for_magic(<the magic's Pending>)
    pending = %peek page_views  # not top-level alone: runs in the background
    df = await pending
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ..errors import StreamnbError

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

__all__ = ["Pending", "install", "schedule", "uninstall", "wait_for_magic"]


class Pending:
    """Work a magic scheduled on the running loop; ``await`` it for the result.

    Not awaited, it runs in the background and reports its outcome (result
    or one-line error) in the cell that started it.

    >>> result = %peek page_views   # doctest: +SKIP
    >>> df = await result           # doctest: +SKIP
    """

    def __init__(self, coro: Coroutine[Any, Any, Any], what: str) -> None:
        self.what = what
        self.awaited = False
        slug = "-".join(re.findall(r"[\w.]+", what))
        self.task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro, name=f"streamnb-magic-{slug}")
        self.task.add_done_callback(self._report)

    def __await__(self) -> Any:
        self.awaited = True
        try:
            return (yield from asyncio.shield(self.task).__await__())
        except asyncio.CancelledError:
            self.awaited = False  # interrupted: the work goes on and reports when done
            if self.task.done():
                self._report(self.task)
            raise

    def done(self) -> bool:
        """True once the work finished."""
        return self.task.done()

    def _report(self, task: asyncio.Task[Any]) -> None:
        if self.awaited or task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            print(
                f"UsageError: {exc}" if isinstance(exc, UsageError) else f"{self.what} failed: {exc!r}",
                file=sys.stderr,
            )
            return
        result = task.result()
        if result is not None:
            from IPython.display import display

            display(result)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))

    def __repr__(self) -> str:
        if not self.task.done():
            return f"{self.what}… (running in the background; `%streamnb status` shows the app's state)"
        return f"{self.what}: done"


async def wait_for_magic(value: Any) -> Any:
    """Await a :class:`Pending`; return anything else as is.

    The input transformer turns a top-level ``%streamnb start`` line into
    ``await wait_for_magic(get_ipython().run_line_magic("streamnb", "start"))``.

    >>> await wait_for_magic(get_ipython().run_line_magic("peek", "page_views"))  # doctest: +SKIP
    """
    if isinstance(value, Pending):
        return await value
    return value


def schedule(coro: Coroutine[Any, Any, Any], what: str) -> Pending:
    """Run ``coro`` on the kernel's loop as a :class:`Pending` (streamnb errors become UsageErrors)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        coro.close()
        raise UsageError(
            f"{what}: no running event loop; use the magics in a Jupyter kernel (or `await app.start()`)"
        ) from None
    return Pending(_usage_errors(coro), what)


async def _usage_errors(coro: Coroutine[Any, Any, Any]) -> Any:
    """streamnb's own errors become one-line UsageErrors."""
    try:
        return await coro
    except StreamnbError as exc:
        raise UsageError(str(exc)) from None


_MAGIC_LINE = re.compile(r"^get_ipython\(\)\.run_(?:line|cell)_magic\('(?:streamnb|peek|produce)', .*\)$")
_WAIT = "__import__('streamnb.notebook.awaiting', fromlist=['wait_for_magic']).wait_for_magic"


def _await_transformer(shell: InteractiveShell) -> Callable[[list[str]], list[str]]:
    """An input transformer: top-level ``%streamnb``/``%peek``/``%%produce`` lines are awaited."""
    from IPython.core.async_helpers import _asyncio_runner

    def await_magics(lines: list[str]) -> list[str]:
        if not shell.autoawait or shell.loop_runner is not _asyncio_runner:
            return lines
        out = []
        for line in lines:
            body = line.rstrip("\n")
            if _MAGIC_LINE.match(body):
                line = f"await {_WAIT}({body})" + line[len(body):]
            out.append(line)
        return out

    await_magics.streamnb = True  # type: ignore[attr-defined]
    return await_magics


def _traceback_reset(ipython: Any) -> Callable[..., None]:
    """A ``pre_run_cell`` hook resetting ipykernel's ``_last_traceback`` before each cell.

    ipykernel (7.x) reads ``shell._last_traceback`` to answer a failed cell,
    but resets it only on its synchronous path, and a UsageError prints no
    traceback: a UsageError in an awaited cell (every ``%streamnb`` line is
    awaited) before any synchronous cell ran left it unset, the answer
    failed with an AttributeError and the kernel never replied.
    """

    def reset(*_info: Any) -> None:
        ipython._last_traceback = None  # noqa: SLF001 - ipykernel's own attribute; see above

    reset.streamnb = True  # type: ignore[attr-defined]
    return reset


def _unregister_traceback_reset(ipython: Any) -> None:
    for hook in list(ipython.events.callbacks.get("pre_run_cell", ())):
        if getattr(hook, "streamnb", False):
            ipython.events.unregister("pre_run_cell", hook)


def install(ipython: Any) -> None:
    """Await top-level magic lines, and keep ipykernel's error replies working (``%load_ext streamnb``)."""
    uninstall(ipython)
    ipython.input_transformers_post.append(_await_transformer(ipython))
    ipython.events.register("pre_run_cell", _traceback_reset(ipython))


def uninstall(ipython: Any) -> None:
    """Undo :func:`install`."""
    posts = ipython.input_transformers_post
    posts[:] = [t for t in posts if not getattr(t, "streamnb", False)]
    _unregister_traceback_reset(ipython)
