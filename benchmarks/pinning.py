"""Client and server on cores of their own, as when the database runs on another machine.

On this machine the benchmark's client and its private PostgreSQL share two cores, and the
scheduler decides, run by run, whether a backend runs on the core the client just left:
then the client resumes with caches the server filled, and its CPU per call rises. Over five
runs of the same code that moved the add_turn library/raw ratio between 1.17 and 1.37; in
production the database is on another machine and never touches the client's caches.
`cores_apart` pins this process to one core and the server (postmaster and every backend,
those forked later included) to the others, for the sections that measure client CPU or
compare client designs.

Only a server started for this run is pinned: with DATABASE_URL the server may be shared,
and the sections run unpinned.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from benchmarks.database import Database


def pinnable(database: Database) -> bool:
    """Whether `cores_apart` can pin: a private server, two cores or more, Linux."""
    return (
        database.private and hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2
    )


@contextmanager
def cores_apart(database: Database) -> Iterator[str]:
    """Pin the client to one core and the private server to the rest, until the block
    ends (if `pinnable`); yields how the cores were split, for the report."""
    if not pinnable(database):
        yield "not pinned: client and server share every core"
        return
    cores = sorted(os.sched_getaffinity(0))
    client, server = {cores[0]}, set(cores[1:])
    postmaster = _postmaster_pid(database.dsn)
    threads = _threads_of(os.getpid())
    _pin([postmaster, *_children_of(postmaster)], server)
    _pin(threads, client)
    try:
        yield f"client pinned to core {cores[0]}, server to core(s) {sorted(server)}"
    finally:
        _pin([postmaster, *_children_of(postmaster)], set(cores))
        _pin(_threads_of(os.getpid()), set(cores))


def _postmaster_pid(dsn: str) -> int:
    """The server's main process: the parent of a backend (every backend is its child)."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        row = connection.execute("select pg_backend_pid()").fetchone()
        assert row is not None
        return _parent_of(int(row[0]))  # while the backend is still there


def _parent_of(pid: int) -> int:
    # /proc/<pid>/stat: "pid (command) state ppid ..."; the command may hold spaces.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def _children_of(parent: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if _parent_of(int(entry.name)) == parent:
                    children.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue  # ended meanwhile
    return children


def _threads_of(pid: int) -> list[int]:
    # sched_setaffinity pins one thread: pin each (threads started later inherit the mask).
    return [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()]


def _pin(pids: list[int], cores: set[int]) -> None:
    for pid in pids:
        try:
            os.sched_setaffinity(pid, cores)
        except ProcessLookupError:
            continue  # a backend that ended meanwhile
