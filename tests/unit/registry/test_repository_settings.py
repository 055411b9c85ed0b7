"""Inconsistent repository settings are refused clearly, flat routing settings (alias,
catch-all, host name) are normalized and checked against the other repositories, and
changing a repository changes only what is given; over a real SQLite database."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cargohold.config import load_settings
from cargohold.db.engine import migrate
from cargohold.registry.errors import Conflict, InvalidInput, NotFound
from cargohold.registry.projects import FlatRouting, ProxySettings
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
        ({"routing": FlatRouting("Team/External/")}, "is not a name prefix"),
        ({"routing": FlatRouting("team//external/")}, "is not a name prefix"),
        ({"routing": FlatRouting(host_name="https://hub.example.test")}, "not a host name"),
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
            with pytest.raises(InvalidInput, match="is not a name prefix"):
                await services.projects.update_repository(
                    "team", "apps", flat_alias_prefix="X/", anonymous_read=False
                )
            # A refused change changes nothing, not even its valid part.
            assert (await services.projects.get_repository("team", "apps")).anonymous_read
            with pytest.raises(NotFound):
                await services.projects.update_repository("team", "nope", anonymous_read=True)
        finally:
            await services.close()

    asyncio.run(scenario())


def test_the_untagged_manifest_policy_is_keep_delete_or_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        services = await _services(tmp_path)
        projects = services.projects
        try:
            assert (await projects.create_repository("team", "apps")).untagged_manifests == "keep"
            with pytest.raises(InvalidInput, match="untagged_manifests 'sometimes'"):
                await projects.create_repository("team", "other", untagged_manifests="sometimes")
            changed = await projects.update_repository("team", "apps", untagged_manifests="delete")
            assert changed.untagged_manifests == "delete"
            with pytest.raises(InvalidInput, match="choose keep, delete"):
                await projects.update_repository("team", "apps", untagged_manifests="drop")
            assert (await projects.get_repository("team", "apps")).untagged_manifests == "delete"
        finally:
            await services.close()

    asyncio.run(scenario())


def test_flat_routing_is_normalized_kept_and_removed(tmp_path: Path) -> None:
    async def scenario() -> None:
        services = await _services(tmp_path)
        projects = services.projects
        try:
            created = await projects.create_repository(
                "team",
                "hub",
                routing=FlatRouting("/team/External".lower(), True, "Hub.Example.Test:5000"),
            )
            assert (created.flat_alias_prefix, created.is_catch_all, created.host_name) == (
                "team/external/",
                True,
                "hub.example.test:5000",
            )
            assert await projects.get_repository("team", "hub") == created
            # The router knows at once.
            target = await services.router.resolve("team/external/nginx")
            assert (target.repository.id, target.image) == (created.id, "nginx")
            assert (await services.router.resolve("nginx")).repository.id == created.id
            hosted = await services.router.resolve("apps/x", "hub.example.test:5000")
            assert (hosted.repository.id, hosted.image) == (created.id, "apps/x")

            # None leaves a setting as it is; a new value replaces it.
            changed = await projects.update_repository("team", "hub", flat_alias_prefix="ext")
            assert (changed.flat_alias_prefix, changed.is_catch_all, changed.host_name) == (
                "ext/",
                True,
                "hub.example.test:5000",
            )
            assert (await services.router.resolve("ext/nginx")).image == "nginx"
            assert (await services.router.resolve("team/external/nginx")).image == (
                "team/external/nginx"  # the catch-all's now
            )
            # '' removes an alias or a host name; False ends the catch-all.
            removed = await projects.update_repository(
                "team", "hub", flat_alias_prefix="", is_catch_all=False, host_name=""
            )
            assert (removed.flat_alias_prefix, removed.is_catch_all, removed.host_name) == (
                None,
                False,
                None,
            )
            assert await services.router.find("ext/nginx") is None
            assert await services.router.find("nginx") is None
            assert await services.router.find("x", "hub.example.test:5000") is None
        finally:
            await services.close()

    asyncio.run(scenario())


def test_flat_routing_clashes_are_refused_naming_the_other_repository(tmp_path: Path) -> None:
    async def scenario() -> None:
        services = await _services(tmp_path)
        projects = services.projects
        try:
            await projects.create_repository(
                "team", "hub", routing=FlatRouting("external/", True, "hub.example.test")
            )
            await projects.create_repository("team", "apps")
            refusals = [
                (FlatRouting("external"), "external/ is already the flat alias of team/hub"),
                (FlatRouting("team/apps/"), "team/apps/ is already the repository team/apps"),
                (FlatRouting(is_catch_all=True), "team/hub is already the catch-all"),
                (FlatRouting(host_name="HUB.example.test"), "already bound to team/hub"),
            ]
            for routing, message in refusals:
                with pytest.raises(Conflict) as refused:
                    await projects.create_repository("team", "new", routing=routing)
                assert message in str(refused.value)
            with pytest.raises(Conflict, match="repository team/apps already exists"):
                await projects.create_repository("team", "apps")
            # A canonical prefix an alias has already.
            await projects.create_project("external")
            await projects.update_repository("team", "apps", flat_alias_prefix="external/x")
            with pytest.raises(Conflict, match="is already the flat alias of team/apps"):
                await projects.create_repository("external", "x")
            # Changes are checked the same way, and a refused one changes nothing.
            for change, message in [
                ({"flat_alias_prefix": "external/"}, "flat alias of team/hub"),
                ({"flat_alias_prefix": "team/apps/"}, "own canonical prefix"),
                ({"is_catch_all": True}, "team/hub is already the catch-all"),
                ({"host_name": "hub.example.test"}, "already bound to team/hub"),
            ]:
                with pytest.raises(Conflict, match=message):
                    await projects.update_repository(
                        "team",
                        "apps",
                        anonymous_read=True,
                        **change,  # type: ignore[arg-type]
                    )
            apps = await projects.get_repository("team", "apps")
            assert (apps.flat_alias_prefix, apps.is_catch_all, apps.host_name) == (
                "external/x/",
                False,
                None,
            )
            assert not apps.anonymous_read
            assert [r.name for r in await projects.list_repositories()] == ["apps", "hub"]
        finally:
            await services.close()

    asyncio.run(scenario())
