"""The demo's workload: an application's traffic with its slow spots and its lock queue.

Several client threads run mostly fast point queries, some slow ones (sleeps and a scan),
over both protocols (psycopg binds parameters: the extended protocol; libpq's PQexec sends
the simple one), and transactions that commit and abort. One more session takes a row lock
on a hot account and sits idle in transaction while clients queue behind it: the classic
incident that samplers miss.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

SCHEMA = """
create table accounts (id int primary key, owner text not null, balance bigint not null);
insert into accounts select g, 'customer ' || g, 1000 from generate_series(1, 10000) g;
create table orders (id bigserial primary key, account int not null, amount numeric not null,
                     note text not null);
insert into orders (account, amount, note)
    select 1 + g % 10000, (g % 97) * 1.25, md5(g::text) from generate_series(1, 300000) g;
analyze accounts; analyze orders;
"""

HOT_ACCOUNT = 1
HOLD_S = 2.0  # how long the blocker sits idle in transaction on the hot row
HOLD_EVERY_S = 7.0
FIRST_HOLD_S = 1.0  # soon after the start, so even a short demo shows a lock queue


@dataclass
class WorkloadStats:
    operations: int = 0  # queries and transactions sent
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> None:
        with self.lock:
            self.operations += 1


class DemoWorkload:
    """Client threads against a server, until stop()."""

    def __init__(self, connect, clients: int, seed: int = 2026):
        self._connect = connect  # () -> psycopg.Connection (autocommit)
        self._clients = max(clients, 2)
        self._seed = seed
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.stats = WorkloadStats()

    def prepare(self) -> None:
        with self._connect() as connection:
            connection.execute("drop table if exists orders; drop table if exists accounts")
            for statement in filter(str.strip, SCHEMA.split(";")):
                connection.execute(statement)

    def start(self) -> None:
        targets = [self._blocker] + [self._application] * (self._clients - 1)
        for number, target in enumerate(targets):
            thread = threading.Thread(target=self._guarded, args=(target, number), daemon=True,
                                      name=f"demo-client-{number}")
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(10)

    def _guarded(self, body, number: int) -> None:
        try:
            with self._connect() as connection:
                body(connection, random.Random(self._seed + number))
        except Exception:  # the server went away: the demo is ending
            pass

    def _application(self, connection, rng: random.Random) -> None:
        while not self._stopping.is_set():
            roll = rng.random()
            if roll < 0.80:
                connection.execute("select balance from accounts where id = %s", (rng.randint(1, 10000),))
            elif roll < 0.88:
                self._simple(connection, f"select owner, balance from accounts where id = {rng.randint(1, 10000)}")
            elif roll < 0.93:
                self._transfer(connection, rng)
            elif roll < 0.955:
                connection.execute("select pg_sleep(%s)", (round(rng.uniform(0.12, 0.45), 2),))
            elif roll < 0.97:
                self._simple(connection, f"select pg_sleep({round(rng.uniform(0.12, 0.3), 2)})")
            elif roll < 0.98:
                self._simple(connection, "select account, count(*), sum(amount) from orders "
                                         "group by account order by 3 desc limit 5")
            elif roll < 0.99:
                self._pay_hot_account(connection)
            else:
                self._failing_transaction(connection)
            self.stats.count()

    def _simple(self, connection, sql: str) -> None:
        """The simple query protocol: one Query message, literals in the text."""
        connection.pgconn.exec_(sql.encode())

    def _transfer(self, connection, rng: random.Random) -> None:
        source, target = rng.sample(range(2, 10001), 2)
        amount = rng.randint(1, 50)
        connection.execute("begin")
        connection.execute("update accounts set balance = balance - %s where id = %s", (amount, source))
        connection.execute("update accounts set balance = balance + %s where id = %s", (amount, target))
        connection.execute("rollback" if rng.random() < 0.1 else "commit")

    def _pay_hot_account(self, connection) -> None:
        connection.execute("update accounts set balance = balance + 1 where id = %s", (HOT_ACCOUNT,))

    def _failing_transaction(self, connection) -> None:
        connection.execute("begin")
        try:
            connection.execute("select balance / 0 from accounts where id = %s", (HOT_ACCOUNT,))
        except Exception:  # division by zero: the transaction aborts, as intended
            pass
        connection.execute("rollback")

    def _blocker(self, connection, rng: random.Random) -> None:
        """A session that forgets to commit for a while after touching the hot row."""
        pause = FIRST_HOLD_S
        while not self._stopping.wait(pause):
            pause = HOLD_EVERY_S * rng.uniform(0.6, 1.0)
            connection.execute("begin")
            connection.execute("update accounts set balance = balance - 5 where id = %s", (HOT_ACCOUNT,))
            self._stopping.wait(HOLD_S)
            connection.execute("commit")
            self.stats.count()
