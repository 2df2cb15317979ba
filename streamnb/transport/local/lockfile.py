"""The ``LOCK`` file of a ``local://`` folder: one owner process at a time, and how the last one stopped.

While a process owns the folder it holds an ``fcntl.flock`` on ``PATH/LOCK``
(released by the OS when the process dies), and the file says who and how
much::

    12345
    messages 00000000000001048576

the owner's pid, and the folder's high-water mark: how many messages its
partitions had taken in all (their end offsets, summed) at the last commit.
A clean stop empties the file. So a ``LOCK`` that is not empty when a folder
is opened means its last owner did not close it (``kill -9``, a crash, a
power cut): the store then checks the whole database before serving it
(``PRAGMA quick_check``), and compares the mark with the database's own
sum. Fewer messages in the database than the mark means committed
transactions are gone -- the ``-wal`` file was deleted or replaced after
the kill, or the disk dropped writes -- and the store says so
(:class:`~streamnb.errors.CorruptStoreError`) instead of serving what is
left.

The mark is written after each commit that appends (and before a delete
lowers it), so it never exceeds what the database holds unless the
database lost commits. It is a fixed-width number, so rewriting it in place
never leaves a longer old line behind.

Example::

    >>> parse("4242\\nmessages 00000000000000000012\\n")
    Previous(pid=4242, messages=12, text='4242\\nmessages 00000000000000000012\\n')
    >>> parse("") is None
    True
"""

from __future__ import annotations

import fcntl
import os
import re
from dataclasses import dataclass

from ...errors import BrokerLockedError

__all__ = ["LOCK_NAME", "Lock", "Previous", "lost_commits", "parse", "take"]

LOCK_NAME = "LOCK"
_MARK = re.compile(r"messages (\d{1,20})")


@dataclass(frozen=True)
class Previous:
    """What the last owner left in ``LOCK``: it did not stop cleanly.

    ``pid`` and ``messages`` (its high-water mark) are ``None`` when the file
    does not say (an older streamnb wrote only the pid; or the file is garbled).
    """

    pid: int | None
    messages: int | None
    text: str


def parse(text: str) -> Previous | None:
    """What a ``LOCK`` file's ``text`` says about the last stop (``None``: clean)."""
    if not text:
        return None
    lines = text.split("\n")
    pid = int(lines[0]) if lines[0].isdigit() and len(lines[0]) < 12 else None
    found = _MARK.fullmatch(lines[1]) if len(lines) > 1 else None
    return Previous(pid, int(found.group(1)) if found else None, text)


def _line(pid: int, messages: int | None) -> bytes:
    return f"{pid}\n".encode() + (b"" if messages is None else f"messages {messages:020d}\n".encode())


class Lock:
    """A held ``LOCK``: :func:`take` it, :meth:`mark` after commits, :meth:`release` it when done."""

    def __init__(self, fd: int, existed: bool, previous: Previous | None, write: bool) -> None:
        self.fd = fd
        self.existed = existed
        self.previous = previous
        self.write = write
        self.pid = os.getpid()

    def mark(self, messages: int) -> None:
        """Record the folder's high-water mark (after a commit that appended, before a delete that lowers it)."""
        if self.write and self.fd >= 0:
            os.pwrite(self.fd, _line(self.pid, messages), 0)

    def forget(self) -> None:
        """Close the descriptor and leave the file alone (a forked child: the parent still holds the lock)."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def release(self, *, clean: bool) -> None:
        """Let the folder go: ``clean`` empties the file; otherwise it gets back what the last owner left."""
        fd, self.fd = self.fd, -1
        if fd < 0:
            return
        try:
            if self.write:
                os.ftruncate(fd, 0)
                if not clean and self.previous is not None:
                    os.pwrite(fd, self.previous.text.encode(), 0)
        finally:
            os.close(fd)  # releases the flock


def take(folder: str, *, write: bool = True) -> Lock:
    """Lock ``folder`` for this process, or raise :class:`~streamnb.errors.BrokerLockedError`.

    With ``write`` the file then names this process (and keeps the last
    owner's mark until :meth:`Lock.mark` replaces it); without, it is only
    read (what ``streamnb check`` does).
    """
    path = os.path.join(folder, LOCK_NAME)
    existed = os.path.exists(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode(errors="replace").split("\n")[0].strip() or "unknown"
        os.close(fd)
        if owner == str(os.getpid()):
            who = f"this process (pid {owner}) through another copy of streamnb (was the module reloaded?)"
        else:
            who = f"another process (pid {owner})"
        raise BrokerLockedError(
            f"the local:// folder {folder} is in use by {who}. Stop the app or kernel that "
            "uses it (await app.stop(), or shut that kernel down), or give this app another "
            "folder, e.g. broker='local://other'."
        ) from None
    try:
        previous = parse(os.pread(fd, 4096, 0).decode(errors="replace"))
        if write:
            os.ftruncate(fd, 0)
            os.pwrite(fd, _line(os.getpid(), previous.messages if previous else None), 0)
    except BaseException:
        os.close(fd)
        raise
    return Lock(fd, existed, previous, write)


def lost_commits(path: str, previous: Previous, have: int, wal_existed: bool) -> str:
    """What to say when the database holds fewer messages than the lock's high-water mark."""
    who = f"its last owner (pid {previous.pid})" if previous.pid else "its last owner"
    assert previous.messages is not None
    cause = (
        f"its write-ahead log {path}-wal is gone: it was deleted after {who} was killed, and with it every "
        "commit not yet copied into the database"
        if not wal_existed
        else f"the write-ahead log {path}-wal was replaced, or the disk lost writes (a power cut with sync=normal)"
    )
    return (
        f"{previous.messages - have} messages committed before {who} stopped are missing (its partitions hold "
        f"{have} messages in all; {LOCK_NAME} recorded {previous.messages} after the last commit): {cause}. What is "
        "left is consistent (whole commits, consumer offsets with them) but older. If that -wal file was moved "
        "rather than deleted, put it back and open the folder again; to go on without those commits, salvage "
        "what is left"
    )
