"""The open ``local://`` folders of this process: one :class:`Store` per folder, shared.

Every App of a process that opens the same folder shares one store (so
re-running the notebook cell that builds an App just works); the last
:func:`release` closes it. A folder being closed is opened again only after
the close finished. After ``fork`` the child owns no folder.

Example (on a running loop)::

    store = acquire("/tmp/data", full_sync=False)
    await asyncio.wrap_future(store.opened)
    ...
    release(store)
"""

from __future__ import annotations

import concurrent.futures
import os
import threading

from .store import Store

__all__ = ["acquire", "release"]

_stores: dict[str, Store] = {}
_closing: dict[str, concurrent.futures.Future[None]] = {}
_registry_lock = threading.Lock()


def acquire(folder: str, full_sync: bool) -> Store:
    """The store of ``folder`` (opening it on first use); :func:`release` it when done."""
    with _registry_lock:
        store = _stores.get(folder)
        if store is None:
            store = _stores[folder] = Store(folder, full_sync, _closing.get(folder))
        store.refs += 1
        return store


def release(store: Store) -> concurrent.futures.Future[None] | None:
    """Drop one reference; the last one closes the store (returns the closing future)."""
    with _registry_lock:
        store.refs -= 1
        if store.refs > 0:
            return None
        if _stores.get(store.folder) is store:
            del _stores[store.folder]
        closing = store.executor.submit(store.close_sync)
        store.executor.shutdown(wait=False)
        _closing[store.folder] = closing

    def forget(done: concurrent.futures.Future[None]) -> None:
        with _registry_lock:
            if _closing.get(store.folder) is done:
                del _closing[store.folder]

    closing.add_done_callback(forget)
    return closing


def _forget_stores_in_child() -> None:
    """After fork: the child owns no folder (its copy of each lock descriptor is closed)."""
    global _registry_lock
    _registry_lock = threading.Lock()
    for store in _stores.values():
        if store.lock is not None:
            store.lock.forget()
        store.conn = None
    _stores.clear()
    _closing.clear()


os.register_at_fork(after_in_child=_forget_stores_in_child)
