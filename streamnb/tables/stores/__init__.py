"""Where a table's rows live: ``memory://`` (a dict in the process) or ``rocksdb://`` (on disk).

``App(store=...)`` sets the default for every table, ``app.Table(..., store=...)``
one table's. With ``rocksdb://`` a table's rows live in RocksDB under
``datadir`` (:mod:`~streamnb.tables.stores.rocksdb`), behind a write-back
cache (:mod:`~streamnb.tables.state.stored`): a restart reads only the
changelog written since the last commit, and memory does not grow with the
number of keys.

>>> check_store("rocksdb://"), check_store("memory://")
('rocksdb://', 'memory://')
>>> check_store("redis://")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
streamnb.errors.ConfigurationError: store='redis://' is not a table store: use 'memory://' ... or 'rocksdb://' ...
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...errors import ConfigurationError

__all__ = ["DEFAULT", "MEMORY", "ROCKSDB", "STORES", "check_store", "default_store", "parse_bytes", "store_settings"]

MEMORY = "memory://"
ROCKSDB = "rocksdb://"
STORES = (MEMORY, ROCKSDB)
DEFAULT: str | None = None
"""The store of an App that does not name one; ``None``: by broker (:func:`default_store`)."""


def default_store(broker: str) -> str:
    """The store of an App on ``broker`` that names none: ``rocksdb://`` on the durable brokers.

    A table on ``local://`` or ``kafka://`` outlives its process, so its rows go
    to disk and a restart reads only the changelog's tail; ``memory://`` keeps
    nothing across processes, so its tables stay in memory too (docs/state.md,
    "State and restarts", gives the figures that chose this).

    >>> default_store("local://.streamnb"), default_store("kafka://127.0.0.1:9092"), default_store("memory://")
    ('rocksdb://', 'rocksdb://', 'memory://')
    """
    if DEFAULT is not None:
        return DEFAULT
    return ROCKSDB if broker.startswith(("local://", "kafka://")) else MEMORY


def check_store(url: Any) -> str:
    """``url`` as a store name (``memory://`` or ``rocksdb://``), or a :class:`ConfigurationError`."""
    text = str(url).strip()
    if text in ("memory", "rocksdb"):
        text += "://"
    if text not in STORES:
        raise ConfigurationError(
            f"store={url!r} is not a table store: use 'memory://' (rows in the process) "
            "or 'rocksdb://' (rows on disk under datadir=)"
        )
    return text


def parse_bytes(value: Any, name: str) -> int:
    """A size in bytes from an int or a string such as ``"64MB"``/``"1GiB"``.

    >>> parse_bytes("64MB", "store_memory"), parse_bytes(1024, "store_memory")
    (67108864, 1024)
    """
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    text = str(value).strip().upper().replace("IB", "B")
    for suffix, factor in (("KB", 1 << 10), ("MB", 1 << 20), ("GB", 1 << 30), ("B", 1)):
        if text.endswith(suffix) and text[: -len(suffix)].strip().isdigit():
            return int(text[: -len(suffix)]) * factor
    raise ConfigurationError(f"{name}={value!r}: give a size in bytes, e.g. 67108864 or '64MB'")


def store_settings(settings: Mapping[str, Any], broker: str, app_id: str) -> tuple[str, Path, int]:
    """An App's ``(store, datadir, store_memory)`` from its settings.

    ``datadir`` defaults as in Faust: inside the ``local://`` folder, else
    ``<app id>-data`` in the working directory; ``store_memory`` to 64 MB.

    >>> store_settings({}, "local://.streamnb", "shop")
    ('rocksdb://', PosixPath('.streamnb'), 67108864)
    >>> store_settings({"store": "rocksdb://"}, "kafka://127.0.0.1:9092", "shop")[:2]
    ('rocksdb://', PosixPath('shop-data'))
    """
    store = check_store(settings.get("store") or default_store(broker))
    datadir = settings.get("datadir")
    if datadir is None:
        datadir = broker[len("local://"):] if broker.startswith("local://") else f"{app_id}-data"
    memory = parse_bytes(settings.get("store_memory", 64 << 20), "store_memory")
    return store, Path(str(datadir).format(appid=app_id)), memory
