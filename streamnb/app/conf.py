"""``app.conf``: an App's settings under Faust's names, read and changed as in Faust.

What each name means, which are honoured and which only noted is decided in
:mod:`streamnb.app.settings`; this is the object users touch.

>>> from streamnb import App
>>> App("orders", broker="memory://", topic_partitions=4).conf.topic_partitions
4
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from typing import Any, Protocol

from ..errors import ConfigurationError
from ..tables.stores import MEMORY, check_store
from .settings import (
    APP_SETTINGS,
    FAUST_DEFAULT_WEB_PORT,
    KAFKA_SETTINGS,
    NOTES,
    UNSUPPORTED,
    batch_max_bytes,
    closest,
    note,
    seconds,
    unknown,
)

__all__ = ["Settings", "SettingsHost"]


class SettingsHost(Protocol):
    """What ``app.conf`` reads and writes on the app (:class:`~streamnb.app.App`)."""

    id: str
    broker: str
    topic_partitions: int
    key_serializer: str
    value_serializer: str
    processing_guarantee: str
    commit_interval: float
    commit_records: int
    stream_batch_size: int
    stream_batch_max_bytes: int
    store: str

    @property
    def tables(self) -> Mapping[str, Any]: ...


# Faust name -> (App attribute, may be changed after App(...)).
_LIVE: Mapping[str, tuple[str, bool]] = {
    "id": ("id", False),
    "broker": ("broker", False),
    "processing_guarantee": ("processing_guarantee", False),
    "topic_partitions": ("topic_partitions", True),
    "key_serializer": ("key_serializer", True),
    "value_serializer": ("value_serializer", True),
    "broker_commit_interval": ("commit_interval", True),
    "broker_commit_every": ("commit_records", True),
    "stream_batch_size": ("stream_batch_size", True),
    "stream_batch_max_bytes": ("stream_batch_max_bytes", True),
    "max_event_time_skew": ("max_event_time_skew", False),
    "store": ("store", True),  # (set through Settings._change_store)
}

_FIXED = frozenset({
    # Read once, by App(...) or when it connects: a later change would be ignored, so it is an error.
    "version", "id_format", "broker_client_id", "url", "ssl_context", "datadir", "store_memory", "reply_create_topic",
})


class Settings:
    """``app.conf``: the app's settings under Faust's names.

    Reading gives the value in use (``conf.topic_partitions``,
    ``conf.broker_commit_interval``, ``conf.web_port``, ...); setting one
    that streamnb honours changes what is defined afterwards, as in Faust;
    setting one without meaning here logs a note once; an unknown name
    raises :class:`ConfigurationError` naming the closest one.

    >>> from streamnb import App
    >>> app = App("orders", broker="memory://")
    >>> app.conf.topic_partitions = 4
    >>> app.topic("orders").partitions is None, app.topic("orders").partition_count
    (True, 4)
    """

    def __init__(self, app: SettingsHost, name: str, values: Mapping[str, Any], noted: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_app", app)
        object.__setattr__(self, "_values", {
            "name": name, "version": 1, "web_enabled": None, "web_port": FAUST_DEFAULT_WEB_PORT,
            "web_bind": "127.0.0.1", "web_host": None, "canonical_url": None, "origin": None,
            "id_format": "{id}-v{self.version}", "broker_client_id": None, "timezone": UTC, **values, **noted,
        })

    def __getattr__(self, name: str) -> Any:
        live = _LIVE.get(name)
        if live is not None:
            return getattr(self._app, live[0])
        values: dict[str, Any] = self.__dict__["_values"]
        if name in values:
            return values[name]
        if name in APP_SETTINGS or name in NOTES or name in KAFKA_SETTINGS:
            return None
        raise AttributeError(f"app.conf has no setting {name!r}; {closest(name, ())}".rstrip("; "))

    def __setattr__(self, name: str, value: Any) -> None:
        app = self._app
        live = _LIVE.get(name)
        if name == "store":
            self._change_store(value)
        elif live is not None:
            attribute, changeable = live
            if not changeable:
                raise ConfigurationError(f"app.conf.{name} cannot change after App(...): make a new App with {name}=")
            if name == "broker_commit_interval":
                value = seconds(value)
            elif name == "stream_batch_max_bytes":
                value = batch_max_bytes(value)
            setattr(app, attribute, value)
        elif name in UNSUPPORTED:
            raise ConfigurationError(f"app.conf.{name} is not supported by streamnb; {UNSUPPORTED[name]}")
        elif name in _FIXED or name in KAFKA_SETTINGS:
            raise ConfigurationError(f"app.conf.{name} cannot change after App(...): make a new App with {name}=")
        elif name in APP_SETTINGS:
            self._values[name] = value
        elif name in NOTES:
            self._values[name] = value
            note(app.id, {name: value})
        else:
            raise unknown(app.id, name, ())

    def _change_store(self, value: Any) -> None:
        """``app.conf.store = ...``: the store of tables defined afterwards (an error if earlier ones took the old)."""
        app, new = self._app, check_store(value)
        if new != app.store:
            if new == MEMORY and app.state == "init":  # (Faust's testing fixture) tables that followed the app follow
                for table in app.tables.values():
                    if getattr(table, "store_named", True) is False:
                        table.keep_in_memory()
            taken = sorted(t.name for t in app.tables.values()
                           if getattr(t, "store", new) == app.store and not getattr(t, "store_named", False))
            if taken:
                raise ConfigurationError(
                    f"app.conf.store = {new!r} comes after table(s) {', '.join(map(repr, taken))} took the app's "
                    f"store {app.store!r}: it changes the store of tables defined afterwards only. "
                    f"Give App(..., store={new!r}), or store= on each table"
                )
        app.store = new
        self._values["store"] = new

    def __repr__(self) -> str:
        return f"<Settings of {self._app.id!r}>"
