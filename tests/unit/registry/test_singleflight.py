from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from cargohold.registry.singleflight import FileLocks, SingleFlight, SingleFlightTimeout


def test_one_holder_at_a_time_per_key(tmp_path: Path) -> None:
    async def run() -> list[str]:
        flights = SingleFlight(FileLocks(tmp_path))
        events: list[str] = []

        async def hold(name: str, key: str) -> None:
            async with flights.hold(key):
                events.append(f"{name} in")
                await asyncio.sleep(0.05)
                events.append(f"{name} out")

        await asyncio.gather(hold("a", "k"), hold("b", "k"))
        return events

    events = asyncio.run(run())
    assert events in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])


def test_other_keys_do_not_wait(tmp_path: Path) -> None:
    async def run() -> None:
        flights = SingleFlight(FileLocks(tmp_path), max_wait=0.2)
        async with flights.hold("one"), flights.hold("two"):
            pass

    asyncio.run(run())


def test_a_waiter_gives_up_after_the_longest_wait(tmp_path: Path) -> None:
    async def run() -> None:
        flights = SingleFlight(FileLocks(tmp_path), max_wait=0.2)
        async with flights.hold("k"):
            with pytest.raises(SingleFlightTimeout) as caught:
                async with flights.hold("k"):
                    pass
            assert caught.value.status == 503

    asyncio.run(run())


def test_another_process_holding_the_file_lock_is_waited_for(tmp_path: Path) -> None:
    """Two instances stand for two processes: only the file lock is shared."""

    async def run() -> None:
        first, second = (
            SingleFlight(FileLocks(tmp_path), max_wait=0.3),
            SingleFlight(FileLocks(tmp_path), max_wait=0.3),
        )
        async with first.hold("k"):
            with pytest.raises(SingleFlightTimeout):
                async with second.hold("k"):
                    pass
        async with second.hold("k"):  # free again once the first let go
            pass

    asyncio.run(run())


def test_without_waiting_a_free_key_is_taken_and_a_held_one_refused_at_once(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        first, second = SingleFlight(FileLocks(tmp_path)), SingleFlight(FileLocks(tmp_path))
        async with first.hold("k", wait=False):
            for flights in (first, second):  # held in this process, and in another
                started = time.monotonic()
                with pytest.raises(SingleFlightTimeout):
                    async with flights.hold("k", wait=False):
                        pass
                assert time.monotonic() - started < 0.2
        async with second.hold("k", wait=False):
            pass

    asyncio.run(run())


def test_a_forgotten_key_leaves_no_lock_file(tmp_path: Path) -> None:
    async def run() -> None:
        flights = SingleFlight(FileLocks(tmp_path))
        async with flights.hold("k"):
            assert len(list(tmp_path.iterdir())) == 1
            flights.forget("k")
        assert list(tmp_path.iterdir()) == []
        flights.forget("k")  # once more: nothing left to drop

    asyncio.run(run())


def test_holding_several_keys_keeps_each_from_other_processes_and_lets_all_go(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        first = SingleFlight(FileLocks(tmp_path), max_wait=0.2)
        second = SingleFlight(FileLocks(tmp_path), max_wait=0.2)
        async with first.hold_all({"b", "a", "c"}):
            for key in ("a", "b", "c"):
                with pytest.raises(SingleFlightTimeout):
                    async with second.hold(key):
                        pass
            async with second.hold("d"):  # other keys do not wait
                pass
        async with second.hold_all(["a", "b", "c"]):  # all free again
            pass

    asyncio.run(run())


def test_a_set_not_had_in_time_holds_none_of_its_keys(tmp_path: Path) -> None:
    """Taken in sorted order, the set stops at the held key and lets go of those before."""

    async def run() -> None:
        first = SingleFlight(FileLocks(tmp_path), max_wait=0.2)
        second = SingleFlight(FileLocks(tmp_path), max_wait=0.2)
        async with first.hold("b"):
            with pytest.raises(SingleFlightTimeout) as caught:
                async with second.hold_all(["c", "b", "a"]):
                    pass
            assert "a and 2 more" in caught.value.message
        async with first.hold("a", wait=False):  # not left held by the failed set
            pass

    asyncio.run(run())
