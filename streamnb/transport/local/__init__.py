"""``local://PATH`` -- the durable embedded broker: sqlite3 (WAL) in a folder.

Processing commits are one sqlite transaction each, so ``local://`` is
exactly-once. The modules, from the facade down:

* :mod:`~streamnb.transport.local.transport` -- :class:`LocalTransport` and
  :class:`LocalConsumer`, the :class:`~streamnb.transport.base.Transport` seam;
* :mod:`~streamnb.transport.local.registry` -- one open store per folder and process;
* :mod:`~streamnb.transport.local.store` -- the open folder: lock, connections, worker threads;
* :mod:`~streamnb.transport.local.lockfile` -- the ``LOCK`` file: the owner, how the last one stopped;
* :mod:`~streamnb.transport.local.reads` -- reads (bounded, round robin);
* :mod:`~streamnb.transport.local.batchcache` -- the reader's batches read in part;
* :mod:`~streamnb.transport.local.log` -- appends, compaction and retention in SQL;
* :mod:`~streamnb.transport.local.maintenance` -- when compaction and retention passes run, and the passes;
* :mod:`~streamnb.transport.local.catalogue` -- the schema, the cached topics, checked catalogue rows;
* :mod:`~streamnb.transport.local.batch` -- how a run of messages is packed into one row;
* :mod:`~streamnb.transport.local.integrity` -- checksums, the checks made on every read, errors that say why;
* :mod:`~streamnb.transport.local.check` -- ``streamnb check`` and ``streamnb salvage``.

Example::

    >>> from streamnb.transport.local import LocalTransport
    >>> LocalTransport("local://data").scheme
    'local'
"""

from __future__ import annotations

from .transport import LocalConsumer, LocalTransport, parse_local_url

__all__ = ["LocalConsumer", "LocalTransport", "parse_local_url"]
