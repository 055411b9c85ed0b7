"""The name router over a real SQLite database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cargohold.config import load_settings
from cargohold.db.engine import migrate
from cargohold.oci.errors import ErrorCode, RegistryError
from cargohold.registry.projects import FlatRouting
from cargohold.registry.services import Services, build_services


async def _services(tmp_path: Path) -> Services:
    settings = load_settings(overrides={"data_dir": tmp_path}, environ={})
    migrate(settings.metadata_url)
    return await build_services(settings)


async def _with_repositories(services: Services, *prefixes: str) -> None:
    for prefix in prefixes:
        project, repository = prefix.split("/")
        if await services.metadata.get_project(project) is None:
            await services.projects.create_project(project)
        await services.projects.create_repository(project, repository)


@pytest.mark.parametrize(
    ("name", "prefix", "image"),
    [
        ("common/hosted/nginx", "common/hosted/", "nginx"),
        ("common/hosted/team/app/api", "common/hosted/", "team/app/api"),
        ("common/hosted/hosted/x", "common/hosted/", "hosted/x"),
        ("other/repo/a", "other/repo/", "a"),
    ],
)
def test_resolves_the_repository_and_image(
    tmp_path: Path, name: str, prefix: str, image: str
) -> None:
    async def run() -> None:
        services = await _services(tmp_path)
        try:
            await _with_repositories(services, "common/hosted", "other/repo")
            target = await services.router.resolve(name)
            assert (target.repository.prefix, target.image, target.name) == (prefix, image, name)
        finally:
            await services.close()

    asyncio.run(run())


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("common/hosted", ErrorCode.NAME_UNKNOWN),  # a repository, but no image name
        ("common/missing/nginx", ErrorCode.NAME_UNKNOWN),
        ("nope/hosted/nginx", ErrorCode.NAME_UNKNOWN),
        ("Common/hosted/nginx", ErrorCode.NAME_INVALID),
        ("common//hosted/nginx", ErrorCode.NAME_INVALID),
        ("common/hosted/nginx/", ErrorCode.NAME_INVALID),
    ],
)
def test_refuses_unknown_and_invalid_names(tmp_path: Path, name: str, code: ErrorCode) -> None:
    async def run() -> None:
        services = await _services(tmp_path)
        try:
            await _with_repositories(services, "common/hosted")
            with pytest.raises(RegistryError) as caught:
                await services.router.resolve(name)
            assert caught.value.code is code
        finally:
            await services.close()

    asyncio.run(run())


def test_sees_a_repository_another_process_created(tmp_path: Path) -> None:
    async def run() -> None:
        first, second = await _services(tmp_path), await _services(tmp_path)
        try:
            await _with_repositories(first, "common/hosted")
            await first.router.resolve("common/hosted/a")  # loads the table
            await _with_repositories(second, "common/late")
            target = await first.router.resolve("common/late/a")
            assert target.repository.name == "late"
        finally:
            await first.close()
            await second.close()

    asyncio.run(run())


def test_a_catch_all_does_not_hide_a_repository_another_process_created(
    tmp_path: Path,
) -> None:
    """A name the catch-all takes may belong to a repository or alias another process just
    made: the router looks before it routes there."""

    async def run() -> None:
        first, second = await _services(tmp_path), await _services(tmp_path)
        try:
            await first.projects.create_project("hub")
            await first.projects.create_repository(
                "hub", "proxy", routing=FlatRouting(is_catch_all=True)
            )
            assert (await first.router.resolve("common/late/a")).repository.name == "proxy"
            await _with_repositories(second, "common/late")
            target = await first.router.resolve("common/late/a")
            assert (target.repository.name, target.image) == ("late", "a")
            await second.projects.update_repository("common", "late", flat_alias_prefix="old/x")
            target = await first.router.resolve("old/x/a")
            assert (target.repository.name, target.image) == ("late", "a")
            # What is really nobody else's stays the catch-all's.
            target = await first.router.resolve("old/y/a")
            assert (target.repository.name, target.image) == ("proxy", "old/y/a")
            assert (await first.router.resolve("nginx")).repository.name == "proxy"
        finally:
            await first.close()
            await second.close()

    asyncio.run(run())
