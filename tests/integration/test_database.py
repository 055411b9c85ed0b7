"""The metadata database on a real PostgreSQL server: migrations from several nodes at once,
writers on several nodes at once, and the advisory locks that make proxy fetches
single-flight across nodes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from cargohold.db.accounts import AccountStore
from cargohold.db.engine import MIGRATIONS, PoolLimits, is_unavailable, migrate, open_database
from cargohold.db.locks import AdvisoryLocks
from cargohold.db.metadata import MetadataStore, NewManifest
from tests.integration.postgres import Postgres
from tests.integration.server import cargohold
from tests.schema_drift import schema_drift

NODES = 4
CONCURRENT_WRITES = 6
ROUNDS = 10


def test_nodes_migrating_at_once_all_succeed_and_the_schema_is_upgraded_once(
    database: Postgres, tmp_path: Path
) -> None:
    """Each node migrates at start: on a fresh database they race to create the schema.
    Half name the driver in the URL, half leave it to Cargohold: both forms work."""
    url = database.create_database(migrated=False)
    forms = [url, url.replace("postgresql://", "postgresql+asyncpg://")]
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "cargohold", "migrate", "--data-dir", str(tmp_path / f"n{i}")],
            env={**os.environ, "CARGOHOLD_DATABASE_URL": forms[i % 2]},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(NODES)
    ]
    outputs = [node.communicate(timeout=120)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0] * NODES, outputs
    name = url.rsplit("/", 1)[1]
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert database.sql("SELECT version_num FROM alembic_version", name) == head


def test_with_migrate_at_start_off_only_cargohold_migrate_migrates(
    database: Postgres, tmp_path: Path
) -> None:
    """A rollout that migrates as a step of its own: nodes refuse to start on a schema
    that is not up to date, and say what to do."""
    settings = {
        "CARGOHOLD_DATABASE_URL": database.create_database(migrated=False),
        "CARGOHOLD_MIGRATE_AT_START": "false",
    }
    refused = cargohold("project", "list", data_dir=tmp_path, check=False, env=settings)
    assert refused.returncode == 1
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert refused.stderr == (
        f"cargohold: the metadata database's schema is at revision none, this version needs"
        f" {head}: run `cargohold migrate` (migrate_at_start is off)\n"
    )
    cargohold("migrate", data_dir=tmp_path, env=settings)
    assert cargohold("project", "list", data_dir=tmp_path, env=settings).returncode == 0


def test_an_advisory_lock_keeps_other_nodes_out_until_it_is_let_go(database: Postgres) -> None:
    """Two instances stand for two nodes: only the database is shared."""
    url = database.create_database()

    async def run() -> None:
        first, second = AdvisoryLocks(url, 1), AdvisoryLocks(url, 1)
        try:
            async with first.hold("blob:a", time.monotonic() + 1):
                with pytest.raises(TimeoutError):
                    async with second.hold("blob:a", time.monotonic() + 0.3):
                        pass
                async with second.hold("blob:b", time.monotonic() + 0.3):  # another key
                    pass
            async with second.hold("blob:a", time.monotonic() + 1):  # free once let go
                pass
        finally:
            await first.close()
            await second.close()

    asyncio.run(run())


def test_the_migrations_build_the_schema_the_code_declares(database: Postgres) -> None:
    url = database.create_database(migrated=False)
    migrate(url)
    assert schema_drift(url) == []


# Byte order puts digits, capitals, `_`, then small letters; en-US puts `_` first, and
# `a` before `B`.
TAGS_IN_BYTE_ORDER = ["1.0", "B", "Z", "_x", "a", "b"]


def test_tags_list_in_byte_order_whatever_the_database_collation(database: Postgres) -> None:
    """Tags list, and pages follow `last`, in byte order (as on SQLite) in a database
    created with a collation that orders them otherwise."""
    name = f"cargohold_en_us_{uuid.uuid4().hex[:8]}"
    database.sql(
        f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
    )
    url = database.url(name)
    migrate(url)
    in_en_us = database.sql(
        "SELECT string_agg(t, ' ' ORDER BY t) FROM unnest(ARRAY['B', 'a', '_x']) AS t", name
    )
    assert in_en_us == "_x a B", "the database must order otherwise for this test to mean much"

    async def run() -> None:
        node = open_database(url)
        metadata = MetadataStore(node)
        try:
            project = await metadata.create_project("p")
            repository = await metadata.create_repository(project, "r", "hosted", "docker")
            image = await metadata.ensure_image(repository.id, "app")
            await metadata.put_manifest(image, _manifest(0, 0), TAGS_IN_BYTE_ORDER[::-1])
            assert await metadata.list_tags(image, None, None) == TAGS_IN_BYTE_ORDER
            pages, last = [], None
            for _ in TAGS_IN_BYTE_ORDER:  # bounded: one page per tag at most
                page = await metadata.list_tags(image, last, 2)
                if not page:
                    break
                pages.append(page)
                last = page[-1]
            assert pages == [TAGS_IN_BYTE_ORDER[i : i + 2] for i in range(0, 6, 2)]
        finally:
            await node.dispose()

    asyncio.run(run())


def test_an_advisory_lock_is_let_go_when_its_request_is_cancelled(database: Postgres) -> None:
    """The lock's connection goes back to its pool: only once unlocked (another node can take
    it at once), whatever interrupted the holder."""
    url = database.create_database()

    async def run() -> None:
        first, second = AdvisoryLocks(url, 1), AdvisoryLocks(url, 1)
        holding = asyncio.Event()

        async def holder() -> None:
            async with first.hold("upload:a", time.monotonic() + 1):
                holding.set()
                await asyncio.sleep(60)

        try:
            task = asyncio.create_task(holder())
            await asyncio.wait_for(holding.wait(), 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            async with second.hold("upload:a", time.monotonic() + 0.3):
                pass
        finally:
            await first.close()
            await second.close()

    asyncio.run(run())


def test_advisory_locks_held_together_take_one_connection_and_go_together(
    database: Postgres,
) -> None:
    """A garbage collection's batch holds about a hundred stripes at once: on one
    connection, not one each; a set not had in time holds none of its keys."""
    url = database.create_database()
    keys = [f"content:sha256:{i:03x}" for i in range(100)]
    holders = "SELECT count(DISTINCT pid) || ' ' || count(*) FROM pg_locks"
    holders += " WHERE locktype = 'advisory' AND granted"
    holders += " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"

    async def run() -> None:
        first, second = AdvisoryLocks(url, 1), AdvisoryLocks(url, 1)
        try:
            async with first.hold_all(keys, time.monotonic() + 5):
                assert database.sql(holders, url.rsplit("/", 1)[1]) == "1 100"
                with pytest.raises(TimeoutError):
                    async with second.hold(keys[50], time.monotonic() + 0.2):
                        pass
            async with second.hold(keys[0], time.monotonic() + 0.2):
                with pytest.raises(TimeoutError):
                    async with first.hold_all(keys, time.monotonic() + 0.2):
                        pass
                assert database.sql(holders, url.rsplit("/", 1)[1]) == "1 1"
            async with first.hold_all(keys, time.monotonic() + 1):  # all free again
                pass
        finally:
            await first.close()
            await second.close()

    asyncio.run(run())


def test_a_snapshot_sees_the_database_as_it_was_at_its_first_statement(
    database: Postgres,
) -> None:
    """What `cargohold copy` reads its source in: a project created meanwhile is not seen
    by the snapshot's next statement, and is by a plain read's."""
    url = database.create_database()
    count = text("SELECT count(*) FROM projects")

    async def run() -> None:
        node = open_database(url)
        metadata = MetadataStore(node)
        try:
            async with node.snapshot() as snapshot, node.read() as plain:
                assert (await snapshot.execute(count)).scalar_one() == 0
                assert (await plain.execute(count)).scalar_one() == 0
                await metadata.create_project("meanwhile")
                assert (await snapshot.execute(count)).scalar_one() == 0
                assert (await plain.execute(count)).scalar_one() == 1
        finally:
            await node.dispose()

    asyncio.run(run())


def test_the_server_drops_the_connections_of_a_node_that_is_gone_within_a_minute(
    database: Postgres,
) -> None:
    """Connections ask the server for TCP keepalives (`server_engine`, which the advisory
    locks' pool uses too): a node cut off from the network lets go of its locks in about a
    minute, not the system's two hours."""
    url = database.create_database()
    keepalives = text(
        "SELECT current_setting('tcp_keepalives_idle'),"
        " current_setting('tcp_keepalives_interval'), current_setting('tcp_keepalives_count')"
    )

    async def run() -> None:
        node = open_database(url)
        try:
            async with node.read() as conn:
                assert tuple((await conn.execute(keepalives)).one()) == ("30", "10", "3")
        finally:
            await node.dispose()

    asyncio.run(run())


def test_a_pool_of_one_and_one_more_serves_two_requests_and_makes_a_third_wait(
    database: Postgres,
) -> None:
    """The pool's limits as configured: two transactions at once, a third waits for the
    pool's timeout and is told the database is unavailable (a 503 to its client)."""
    url = database.create_database()

    async def run() -> None:
        node = open_database(url, PoolLimits(size=1, overflow=1, timeout_seconds=0.3))
        try:
            async with node.read(), node.read():
                started = time.monotonic()
                with pytest.raises(Exception) as caught:
                    async with node.read():
                        pass
                assert is_unavailable(caught.value)
                assert time.monotonic() - started >= 0.3
            async with node.read():  # given back: free again
                pass
        finally:
            await node.dispose()

    asyncio.run(run())


def _manifest(round_: int, index: int) -> NewManifest:
    return NewManifest(
        digest=f"sha256:{round_:032x}{index:032x}",
        media_type="application/vnd.oci.image.manifest.v1+json",
        size=100,
        artifact_type=None,
        subject_digest=None,
        annotations=None,
        blob_digests=frozenset(),
        child_digests=frozenset(),
    )


def test_writes_from_several_nodes_at_once_that_create_a_row_when_missing_all_succeed(
    database: Postgres,
) -> None:
    """PostgreSQL runs write transactions side by side where SQLite runs them one at a
    time: pushes of one new tag, failed sign-ins of one account and the first start's
    signing key, from two nodes at once, neither fail nor diverge."""
    url = database.create_database()

    async def run() -> None:
        nodes = [open_database(url), open_database(url)]
        metadata = [MetadataStore(node) for node in nodes]
        accounts = [AccountStore(node) for node in nodes]
        try:
            project = await metadata[0].create_project("p")
            repository = await metadata[0].create_repository(project, "r", "hosted", "docker")
            image = await metadata[0].ensure_image(repository.id, "app")
            for round_ in range(ROUNDS):
                await asyncio.gather(
                    *(
                        metadata[i % 2].put_manifest(image, _manifest(round_, i), [f"t{round_}"])
                        for i in range(CONCURRENT_WRITES)
                    )
                )
                tagged = await metadata[1].manifest_by_tag(image, f"t{round_}")
                assert tagged is not None
            await asyncio.gather(
                *(
                    accounts[i % 2].record_failure("user:u", now=1000.0, since=0.0)
                    for i in range(CONCURRENT_WRITES)
                )
            )
            assert await accounts[0].failures("user:u", since=0.0) == (CONCURRENT_WRITES, 1000.0)
            kept = await asyncio.gather(
                *(accounts[i].add_signing_key(f"kid-{i}", f"pem-{i}") for i in range(2))
            )
            assert kept[0] == kept[1]
        finally:
            for node in nodes:
                await node.dispose()

    asyncio.run(run())
