"""The prefix table on its own (no I/O): how a name, and the host it was asked of, find a
repository, how configured prefixes and host names are normalized, and every clash rule."""

from __future__ import annotations

import pytest

from cargohold.db.metadata import RepositoryRecord
from cargohold.registry.prefixes import (
    PrefixClash,
    PrefixError,
    PrefixTable,
    normalize_host,
    normalize_prefix,
)


def repo(
    id: int,
    label: str,
    *,
    alias: str | None = None,
    catch_all: bool = False,
    host: str | None = None,
) -> RepositoryRecord:
    project, name = label.split("/")
    return RepositoryRecord(
        id=id,
        project_id=id * 10,
        project=project,
        name=name,
        kind="hosted",
        format="docker",
        created_at=0.0,
        anonymous_read=False,
        project_anonymous_read=False,
        flat_alias_prefix=alias,
        is_catch_all=catch_all,
        host_name=host,
    )


HOSTED = repo(1, "common/hosted")
EXTERNAL = repo(2, "common/dockerhub-proxy", alias="common/external/")
COMMON = repo(3, "team/apps", alias="common/")
REMOTE = repo(4, "legacy/remote", alias="docker-remote/")
CATCH_ALL = repo(5, "hub/proxy", catch_all=True)
HOST_BOUND = repo(6, "hub/bound", host="dockerhub.example.test")
PORT_BOUND = repo(7, "hub/port", host="registry.example.test:5443")
ALL = (HOSTED, EXTERNAL, COMMON, REMOTE, CATCH_ALL, HOST_BOUND, PORT_BOUND)


def where(table: PrefixTable, name: str, host: str | None = None) -> tuple[str, str] | None:
    """(`project/repository`, image name) of where `name` goes, or None."""
    route = table.route(name, host)
    if route is None:
        return None
    return f"{route.repository.project}/{route.repository.name}", route.image


# Routing


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # Canonical prefixes.
        ("common/hosted/nginx", ("common/hosted", "nginx")),
        ("common/hosted/team/app/api", ("common/hosted", "team/app/api")),
        ("common/dockerhub-proxy/library/nginx", ("common/dockerhub-proxy", "library/nginx")),
        # The longer of the nested aliases `common/` and `common/external/` wins...
        ("common/external/nginx", ("common/dockerhub-proxy", "nginx")),
        ("common/external/library/nginx", ("common/dockerhub-proxy", "library/nginx")),
        # ...and a canonical prefix inside the shorter alias wins over it.
        ("common/hosted/x", ("common/hosted", "x")),
        # What only the short alias matches goes to it.
        ("common/nginx", ("team/apps", "nginx")),
        ("common/externals/nginx", ("team/apps", "externals/nginx")),
        ("common/team/app", ("team/apps", "team/app")),
        ("team/apps/common/x", ("team/apps", "common/x")),
        ("docker-remote/app", ("legacy/remote", "app")),
        ("docker-remote/team/app", ("legacy/remote", "team/app")),
        # A prefix matches whole components only.
        ("docker-remote2/app", ("hub/proxy", "docker-remote2/app")),
        ("commonx/nginx", ("hub/proxy", "commonx/nginx")),
        # The catch-all takes the whole name of what nothing else matches.
        ("nginx", ("hub/proxy", "nginx")),
        ("library/nginx", ("hub/proxy", "library/nginx")),
        ("johnny-depp", ("hub/proxy", "johnny-depp")),
        ("unknown/repo/image", ("hub/proxy", "unknown/repo/image")),
        # A name equal to a prefix is no name in that repository: the shorter prefix, or the
        # catch-all, takes it.
        ("common/external", ("team/apps", "external")),
        ("common/hosted", ("team/apps", "hosted")),
        ("docker-remote", ("hub/proxy", "docker-remote")),
        ("team/apps", ("hub/proxy", "team/apps")),
        ("common", ("hub/proxy", "common")),
    ],
)
def test_a_name_goes_to_the_longest_prefix_else_the_catch_all(
    name: str, expected: tuple[str, str]
) -> None:
    assert where(PrefixTable(ALL), name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("common/hosted/nginx", ("common/hosted", "nginx")),
        ("docker-remote/app", ("legacy/remote", "app")),
        ("nginx", None),
        ("unknown/repo/image", None),
        ("common/hosted", None),  # a repository's prefix, but no image name
        ("docker-remote", None),
    ],
)
def test_without_a_catch_all_what_no_prefix_matches_goes_nowhere(
    name: str, expected: tuple[str, str] | None
) -> None:
    table = PrefixTable([HOSTED, REMOTE])
    assert where(table, name) == expected


def test_an_empty_table_routes_nothing() -> None:
    assert where(PrefixTable(()), "common/hosted/nginx") is None
    assert where(PrefixTable(()), "nginx", "dockerhub.example.test") is None


def test_the_catch_all_alone_takes_every_name() -> None:
    table = PrefixTable([CATCH_ALL])
    assert where(table, "hub/proxy/nginx") == ("hub/proxy", "nginx")  # its canonical prefix
    assert where(table, "common/hosted/nginx") == ("hub/proxy", "common/hosted/nginx")


@pytest.mark.parametrize(
    ("host", "name", "expected"),
    [
        # A host bound without a port: on any port, the whole name is the image name, even a
        # name that starts with another repository's prefix.
        ("dockerhub.example.test", "nginx", ("hub/bound", "nginx")),
        ("dockerhub.example.test:5000", "library/nginx", ("hub/bound", "library/nginx")),
        ("dockerhub.example.test:443", "common/hosted/x", ("hub/bound", "common/hosted/x")),
        ("DockerHub.Example.TEST:5000", "nginx", ("hub/bound", "nginx")),
        # A host bound with a port: on that port only.
        ("registry.example.test:5443", "nginx", ("hub/port", "nginx")),
        ("registry.example.test:5000", "nginx", ("hub/proxy", "nginx")),
        ("registry.example.test", "common/hosted/x", ("common/hosted", "x")),
        # Other hosts: prefixes, then the catch-all.
        ("127.0.0.1:5000", "common/hosted/nginx", ("common/hosted", "nginx")),
        ("127.0.0.1:5000", "nginx", ("hub/proxy", "nginx")),
        ("save.example.test", "docker-remote/app", ("legacy/remote", "app")),
        ("sub.dockerhub.example.test", "nginx", ("hub/proxy", "nginx")),
        (None, "nginx", ("hub/proxy", "nginx")),
    ],
)
def test_a_host_bound_to_a_repository_takes_every_name_asked_of_it(
    host: str | None, name: str, expected: tuple[str, str]
) -> None:
    assert where(PrefixTable(ALL), name, host) == expected


def test_a_host_with_and_without_a_port_bound_to_two_repositories() -> None:
    table = PrefixTable([HOST_BOUND, repo(8, "hub/exact", host="dockerhub.example.test:5000")])
    assert where(table, "nginx", "dockerhub.example.test:5000") == ("hub/exact", "nginx")
    assert where(table, "nginx", "dockerhub.example.test:6000") == ("hub/bound", "nginx")
    assert where(table, "nginx", "dockerhub.example.test") == ("hub/bound", "nginx")


# Normalizing what is configured


@pytest.mark.parametrize(
    ("configured", "normalized"),
    [
        ("common/external/", "common/external/"),
        ("common/external", "common/external/"),
        ("/common/external/", "common/external/"),
        ("/common/external", "common/external/"),
        ("common/external//", "common/external/"),
        (" docker-remote ", "docker-remote/"),
        ("library", "library/"),
        ("a.b/c_d/e__f/g-h/i--j/", "a.b/c_d/e__f/g-h/i--j/"),
    ],
)
def test_a_prefix_is_normalized_to_components_and_one_trailing_slash(
    configured: str, normalized: str
) -> None:
    assert normalize_prefix(configured) == normalized


@pytest.mark.parametrize(
    "configured",
    [
        "Common/External/",  # upper case is outside the name grammar: refused, not folded
        "common/External",
        "COMMON",
        "",
        "/",
        "//",
        "common//external/",
        "common/-external/",
        "common/external-/",
        "common/ex ternal/",
        "common/ex:ternal/",
        "common/.external/",
        "common/ex___ternal/",
    ],
)
def test_a_malformed_prefix_is_refused(configured: str) -> None:
    with pytest.raises(PrefixError) as refused:
        normalize_prefix(configured)
    assert repr(configured) in str(refused.value)
    assert "lowercase components" in str(refused.value)


@pytest.mark.parametrize(
    ("configured", "normalized"),
    [
        ("dockerhub.example.test", "dockerhub.example.test"),
        ("DockerHub.Example.Test", "dockerhub.example.test"),
        (" localhost ", "localhost"),
        ("registry.example.test:5443", "registry.example.test:5443"),
        ("127.0.0.1:5000", "127.0.0.1:5000"),
    ],
)
def test_a_host_name_is_normalized_to_lower_case(configured: str, normalized: str) -> None:
    assert normalize_host(configured) == normalized


@pytest.mark.parametrize(
    "configured",
    [
        "",
        "https://dockerhub.example.test",
        "dockerhub.example.test/",
        "dockerhub.example.test/library",
        "dockerhub..example.test",
        "-dockerhub.example.test",
        "dockerhub.example.test:",
        "dockerhub.example.test:port",
        "docker_hub.example.test",
        "user@dockerhub.example.test",
    ],
)
def test_a_malformed_host_name_is_refused(configured: str) -> None:
    with pytest.raises(PrefixError, match="is not a host name"):
        normalize_host(configured)


# Clash rules: each refusal names the other repository.


def clash(table: PrefixTable, **change: object) -> str:
    settings: dict[str, object] = {
        "repository_id": None,
        "canonical": "new/repo/",
        "flat_alias_prefix": None,
        "is_catch_all": False,
        "host_name": None,
        **change,
    }
    with pytest.raises(PrefixClash) as refused:
        table.check(**settings)  # type: ignore[arg-type]
    return str(refused.value)


def test_an_alias_another_repository_has_is_refused() -> None:
    message = clash(PrefixTable(ALL), flat_alias_prefix="common/external/")
    assert "common/external/" in message and "common/dockerhub-proxy" in message
    assert "flat alias" in message


def test_an_alias_equal_to_another_repositorys_canonical_prefix_is_refused() -> None:
    message = clash(PrefixTable(ALL), flat_alias_prefix="common/hosted/")
    assert "common/hosted/" in message and "the repository common/hosted" in message


def test_a_new_canonical_prefix_equal_to_an_existing_alias_is_refused() -> None:
    table = PrefixTable([repo(1, "legacy/remote", alias="docker-remote/app/")])
    message = clash(table, canonical="docker-remote/app/")
    assert "docker-remote/app/" in message
    assert "the flat alias of legacy/remote" in message


def test_a_repository_that_exists_is_refused_as_existing() -> None:
    message = clash(PrefixTable(ALL), canonical="common/hosted/")
    assert message == "repository common/hosted already exists"


def test_an_alias_equal_to_its_own_canonical_prefix_is_refused() -> None:
    message = clash(PrefixTable(ALL), canonical="new/repo/", flat_alias_prefix="new/repo/")
    assert "new/repo/" in message and "own canonical prefix" in message
    # Also when an existing repository is changed so.
    message = clash(
        PrefixTable(ALL),
        repository_id=1,
        canonical="common/hosted/",
        flat_alias_prefix="common/hosted/",
    )
    assert "own canonical prefix" in message


def test_a_second_catch_all_is_refused() -> None:
    message = clash(PrefixTable(ALL), is_catch_all=True)
    assert message == "hub/proxy is already the catch-all repository"
    # Changing another repository to the catch-all is refused the same way.
    assert "hub/proxy" in clash(
        PrefixTable(ALL), repository_id=1, canonical="common/hosted/", is_catch_all=True
    )


def test_a_host_name_bound_to_another_repository_is_refused() -> None:
    message = clash(PrefixTable(ALL), host_name="dockerhub.example.test")
    assert message == "host dockerhub.example.test is already bound to hub/bound"


def test_a_repository_keeps_its_own_settings_when_changed() -> None:
    table = PrefixTable(ALL)
    # Checked against the others only: its own alias, catch-all and host are no clash.
    table.check(2, "common/dockerhub-proxy/", "common/external/", False, None)
    table.check(5, "hub/proxy/", None, True, None)
    table.check(6, "hub/bound/", None, False, "dockerhub.example.test")
    # And what nobody has is free.
    table.check(None, "new/repo/", "new-alias/", False, "new.example.test")
    table.check(1, "common/hosted/", "hosted/", False, "hosted.example.test:5000")


def test_nested_and_overlapping_prefixes_are_no_clash() -> None:
    table = PrefixTable(ALL)
    # Inside an alias, around one, and the same host on another port.
    table.check(None, "new/repo/", "common/external/more/", False, None)
    table.check(None, "new/repo/", "docker-remote/team/", False, None)
    table.check(None, "common/external2/", None, False, None)
    table.check(None, "new/repo/", None, False, "registry.example.test:5444")
    table.check(None, "new/repo/", None, False, "registry.example.test")


# The names the catalog shows


@pytest.mark.parametrize(
    ("repository", "image", "name"),
    [
        (HOSTED, "nginx", "common/hosted/nginx"),
        (EXTERNAL, "nginx", "common/external/nginx"),
        (COMMON, "nginx", "common/nginx"),
        (REMOTE, "team/app", "docker-remote/team/app"),
        (CATCH_ALL, "nginx", "nginx"),
        (CATCH_ALL, "library/nginx", "library/nginx"),
        (HOST_BOUND, "nginx", "hub/bound/nginx"),  # a host is not a name
        # A flat name that a longer prefix takes is not the image's: the canonical name is.
        (COMMON, "external/nginx", "team/apps/external/nginx"),
        (COMMON, "hosted/x", "team/apps/hosted/x"),
        (CATCH_ALL, "docker-remote/app", "hub/proxy/docker-remote/app"),
        (CATCH_ALL, "common/hosted/x", "hub/proxy/common/hosted/x"),
    ],
)
def test_the_name_clients_use_for_an_image(
    repository: RepositoryRecord, image: str, name: str
) -> None:
    table = PrefixTable(ALL)
    assert table.name_of(repository, image) == name
    assert where(table, name) == (f"{repository.project}/{repository.name}", image)


def test_a_catch_all_with_an_alias_shows_the_bare_name() -> None:
    both = repo(9, "hub/both", alias="hub-alias/", catch_all=True)
    table = PrefixTable([HOSTED, both])
    assert table.name_of(both, "nginx") == "nginx"
    assert table.name_of(both, "common/hosted/x") == "hub-alias/common/hosted/x"
