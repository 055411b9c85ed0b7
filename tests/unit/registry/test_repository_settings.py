"""Repository settings that later work brings (proxies, flat aliases) are refused clearly,
and changing a repository changes only what is given; over a real SQLite database."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cargohold.config import load_settings
from cargohold.db.engine import migrate
from cargohold.registry.errors import InvalidInput, NotFound
from cargohold.registry.projects import ProxySettings
from cargohold.registry.services import Services, build_services


async def _services(tmp_path: Path) -> Services:
    settings = load_settings(overrides={"data_dir": tmp_path}, environ={})
    migrate(settings.metadata_url)
    services = await build_services(settings)
    await services.projects.create_project("team")
    return services


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"kind": "proxy"}, "a proxy repository needs a remote_url"),
        ({"proxy": ProxySettings("https://registry-1.docker.io")}, "only a proxy has one"),
        ({"kind": "proxy", "proxy": ProxySettings("ftp://example.com")}, "http(s) URL"),
        ({"kind": "proxy", "proxy": ProxySettings("https://")}, "http(s) URL"),
        ({"kind": "proxy", "proxy": ProxySettings("https://r.io", -1)}, "cache_ttl"),
        ({"kind": "proxy", "proxy": ProxySettings("https://r.io", 1, "u")}, "username and"),
        ({"flat_alias_prefix": "team/external/"}, "flat aliases"),
        ({"is_catch_all": True}, "catch-all repositories"),
    ],
)
def test_unsupported_or_inconsistent_settings_are_refused_at_creation(
    tmp_path: Path, settings: dict[str, Any], message: str
) -> None:
    async def scenario() -> None:
        services = await _services(tmp_path)
        try:
            with pytest.raises(InvalidInput) as refused:
                await services.projects.create_repository("team", "apps", **settings)
            assert message in str(refused.value)
            assert await services.projects.list_repositories() == []
        finally:
            await services.close()

    asyncio.run(scenario())


def test_an_unknown_kind_is_still_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        services = await _services(tmp_path)
        try:
            with pytest.raises(InvalidInput, match="repository type 'group' is not supported"):
                await services.projects.create_repository("team", "apps", "group")
        finally:
            await services.close()

    asyncio.run(scenario())


def test_update_changes_only_what_is_given(tmp_path: Path) -> None:
    async def scenario() -> None:
        services = await _services(tmp_path)
        try:
            created = await services.projects.create_repository("team", "apps")
            same = await services.projects.update_repository("team", "apps")
            assert same == created
            changed = await services.projects.update_repository("team", "apps", anonymous_read=True)
            assert changed.anonymous_read
            with pytest.raises(InvalidInput, match="flat aliases"):
                await services.projects.update_repository(
                    "team", "apps", flat_alias_prefix="x/", anonymous_read=False
                )
            assert (await services.projects.get_repository("team", "apps")).anonymous_read
            with pytest.raises(NotFound):
                await services.projects.update_repository("team", "nope", anonymous_read=True)
        finally:
            await services.close()

    asyncio.run(scenario())
