"""The store's database access: aiomysql pools for the write and read databases (the only aiomysql import).

Theory of operation
-------------------
Two bounded pools (one when writes and reads go to the same database), created
without connections (`minsize=0`), so the store starts even while a database
is down and reports it per request instead.  Each query runs under one bound
(`QUERY_TIMEOUT_S`, taking a connection included; opening one is bounded by
`CONNECT_TIMEOUT_S`); MariaDB also stops a statement at `max_statement_time`.
A connection that saw an error or a timeout is closed, never reused.  Anything
that means "the database does not answer" becomes `DatabaseUnavailable`, which
the shell answers with 503.  Queries are parameterised (`%s` placeholders
escaped by the driver), never formatted.

Every query's kind (`read`, `write`, `health`), database, outcome (`ok`,
`timeout`, `unavailable`, `error`) and duration (taking a connection included)
go to the observer set with `Repository.observe`, which the shell turns into
metrics.

Addresses: a database on this store's own host is reached on its inner
(listen) address, one on another host at its public address, through that
host's firewall (`topology.reach`).  Either way the connection must leave from
this host's public address (`topology.source_for`) so firewalls and MariaDB's
grants see who it is.  aiomysql has no source-address option: it opens TCP
with `aiomysql.connection._open_connection(host, port)`, which passes extra
keywords to `loop.create_connection`, so `bind_source` replaces that function,
process-wide, with `functools.partial(original, local_addr=(source, 0))`.  A
store process has exactly one source address, so process-wide is what we want.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiomysql
import aiomysql.connection
import pymysql

from foobar_ref.mysql.config import credentials_path
from foobar_ref.store.core import Row
from foobar_ref.topology import Topology

CONNECT_TIMEOUT_S = 4.0
QUERY_TIMEOUT_S = 5.0
POOL_SIZE = 8
POOL_RECYCLE_S = 240  # below the firewalls' 300 s idle timeout, so a pooled connection is never a dead relay
DATABASE = "foobar"
USER = "store"
INIT_COMMAND = f"SET SESSION time_zone = '+00:00', max_statement_time = {QUERY_TIMEOUT_S - 0.5:g}"

T = TypeVar("T")
QueryObserver = Callable[[str, str, str, float], None]  # (kind, database, outcome, seconds)
_ORIGINAL_OPEN = aiomysql.connection._open_connection


class DatabaseUnavailable(Exception):
    """The database did not answer in time, refused us, or went away; `database` names it."""

    def __init__(self, database: str, reason: str, timed_out: bool = False) -> None:
        super().__init__(f"{database}: {reason}")
        self.database = database
        self.reason = reason
        self.timed_out = timed_out


def bind_source(source_ip: str) -> None:
    """Make every aiomysql TCP connection of this process leave from `source_ip` (see the module docstring)."""
    aiomysql.connection._open_connection = functools.partial(_ORIGINAL_OPEN, local_addr=(source_ip, 0))  # type: ignore[attr-defined]


def database_address(topo: Topology, store: str, database: str) -> tuple[str, int]:
    if topo.host_of(store).name == topo.host_of(database).name:
        return topo.listen(database, "mysql")
    return topo.reach(database, "mysql")


class Database:
    """One pool to one MariaDB instance, created on first use."""

    def __init__(self, name: str, address: tuple[str, int], password: Callable[[], str]) -> None:
        self.name = name
        self.address = address
        self._password = password
        self._pool: aiomysql.Pool | None = None
        self._lock = asyncio.Lock()
        self.observer: QueryObserver | None = None

    async def _get_pool(self) -> aiomysql.Pool:
        async with self._lock:
            if self._pool is None:
                self._pool = await aiomysql.create_pool(
                    minsize=0, maxsize=POOL_SIZE, pool_recycle=POOL_RECYCLE_S,
                    host=self.address[0], port=self.address[1], user=USER, password=self._password(),
                    db=DATABASE, charset="utf8mb4", autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                    init_command=INIT_COMMAND,
                )  # fmt: skip
            return self._pool

    async def run(self, work: Callable[[Any], Awaitable[T]], kind: str) -> T:
        """Run `work(cursor)` on a pooled connection within QUERY_TIMEOUT_S, reported as a query of `kind`."""
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await self._run(work)
            outcome = "ok"
            return result
        except DatabaseUnavailable as err:
            outcome = "timeout" if err.timed_out else "unavailable"
            raise
        finally:
            if self.observer is not None:
                self.observer(kind, self.name, outcome, time.perf_counter() - started)

    async def _run(self, work: Callable[[Any], Awaitable[T]]) -> T:
        try:
            async with asyncio.timeout(QUERY_TIMEOUT_S):
                pool = await self._get_pool()
                conn = await pool.acquire()
                try:
                    async with conn.cursor() as cursor:
                        return await work(cursor)
                except BaseException:
                    conn.close()  # a half-read reply must never be reused
                    raise
                finally:
                    pool.release(conn)
        except TimeoutError:
            raise DatabaseUnavailable(self.name, f"no answer within {QUERY_TIMEOUT_S:g} s", timed_out=True) from None
        except (pymysql.err.OperationalError, pymysql.err.InterfaceError) as err:
            raise DatabaseUnavailable(self.name, _describe(err)) from None
        except OSError as err:
            raise DatabaseUnavailable(self.name, str(err)) from None

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            await self._pool.wait_closed()


def _describe(err: pymysql.err.MySQLError) -> str:
    code, *rest = err.args or (0,)
    return f"error {code}: {rest[0] if rest else ''}".strip()


class Repository:
    """The store's two databases: `insert` on the write one, `recent` on the read one."""

    def __init__(self, topo: Topology, hop: str, state_dir: Path) -> None:
        service = topo.service(hop)
        assert service.write_to is not None and service.read_from is not None
        self._state_dir = state_dir
        self.writer = Database(service.write_to, database_address(topo, hop, service.write_to), self._password)
        if service.read_from == service.write_to:
            self.reader = self.writer
        else:
            self.reader = Database(service.read_from, database_address(topo, hop, service.read_from), self._password)

    def observe(self, observer: QueryObserver) -> None:
        """Report every query to `observer(kind, database, outcome, seconds)`."""
        self.writer.observer = observer
        self.reader.observer = observer

    def _password(self) -> str:
        path = credentials_path(self._state_dir)
        try:
            return str(json.loads(path.read_text())[USER])
        except (OSError, ValueError, KeyError) as err:
            raise pymysql.err.OperationalError(0, f"no store credentials in {path}: {err!r}") from None

    async def insert(self, text: str, served_by: str) -> int:
        async def work(cursor: Any) -> int:
            await cursor.execute("INSERT INTO messages (text, served_by) VALUES (%s, %s)", (text, served_by))
            return int(cursor.lastrowid)

        return await self.writer.run(work, "write")

    async def recent(self, limit: int) -> list[Row]:
        async def work(cursor: Any) -> list[Row]:
            await cursor.execute(
                "SELECT id, text, served_by, created_at FROM messages ORDER BY id DESC LIMIT %s", (limit,)
            )
            return [Row(int(i), t, s, _iso(c)) for i, t, s, c in await cursor.fetchall()]

        return await self.reader.run(work, "read")

    async def check(self) -> dict[str, str | None]:
        """Each database's name -> None when `SELECT 1` answered, else why not."""

        async def ping(db: Database) -> str | None:
            async def work(cursor: Any) -> None:
                await cursor.execute("SELECT 1")
                await cursor.fetchall()

            try:
                await db.run(work, "health")
            except DatabaseUnavailable as err:
                return err.reason
            return None

        databases = {self.writer.name: self.writer, self.reader.name: self.reader}
        results = await asyncio.gather(*(ping(db) for db in databases.values()))
        return dict(zip(databases, results, strict=True))

    async def close(self) -> None:
        await self.writer.close()
        if self.reader is not self.writer:
            await self.reader.close()


def _iso(value: dt.datetime | str) -> str:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return str(value)
