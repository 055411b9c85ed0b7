"""The queries of leases: which process of which node runs a maintenance job now."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from cargohold.db.schema import maintenance_leases
from cargohold.db.store import Store


@dataclass(frozen=True, slots=True)
class LeaseRow:
    holder: str
    expires_at: float
    finished_at: float | None


class LeaseStore(Store):
    async def take(
        self, name: str, holder: str, seconds: float, *, finished_before: float | None = None
    ) -> LeaseRow | None:
        """Take or renew the lease `name` for `seconds`; None when taken, else the lease as
        it stands: another holder's that has not lapsed, or (with `finished_before`) one
        given back after that moment."""
        now = time.time()
        async with self._write() as conn:
            await self._insert_ignoring_duplicates(
                conn, maintenance_leases, [{"name": name, "holder": "", "expires_at": 0.0}]
            )
            row = (
                await conn.execute(
                    select(maintenance_leases)
                    .where(maintenance_leases.c.name == name)
                    # PostgreSQL: the row stays ours until the transaction ends.
                    .with_for_update()
                )
            ).one()
            current = LeaseRow(row.holder, row.expires_at, row.finished_at)
            if current.holder != holder and current.expires_at > now:
                return current
            if finished_before is not None and (current.finished_at or 0.0) > finished_before:
                return current
            await conn.execute(
                update(maintenance_leases)
                .where(maintenance_leases.c.name == name)
                .values(holder=holder, expires_at=now + seconds)
            )
            return None

    async def release(self, name: str, holder: str, *, finished: bool) -> None:
        """Give the lease back; `finished` records that the work was done now."""
        values: dict[str, Any] = {"expires_at": 0.0}
        if finished:
            values["finished_at"] = time.time()
        async with self._write() as conn:
            await conn.execute(
                update(maintenance_leases)
                .where(maintenance_leases.c.name == name, maintenance_leases.c.holder == holder)
                .values(**values)
            )
