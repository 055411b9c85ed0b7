"""The token-auth protocol pieces with no I/O: the scope grammar, the Bearer challenge and the
Authorization header."""

from __future__ import annotations

import base64

import pytest

from cargohold.oci.auth import (
    BasicCredentials,
    BearerToken,
    MalformedAuthorization,
    Scope,
    bearer_challenge,
    parse_authorization,
    parse_scope,
    parse_scopes,
)

# Scopes


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("repository:foo:pull", Scope("repository", "foo", ("pull",))),
        ("repository:foo/bar:pull,push", Scope("repository", "foo/bar", ("pull", "push"))),
        (
            "repository:samalba/my-app:push,pull,delete",
            Scope("repository", "samalba/my-app", ("push", "pull", "delete")),
        ),
        # The name may hold one `:`, a registry host's port: it stays in the name.
        (
            "repository:localhost:5000/foo:pull",
            Scope("repository", "localhost:5000/foo", ("pull",)),
        ),
        (
            "repository:Registry.Example.com:443/a/b:pull,push",
            Scope("repository", "Registry.Example.com:443/a/b", ("pull", "push")),
        ),
        ("repository:a.b_c__d---e/f:pull", Scope("repository", "a.b_c__d---e/f", ("pull",))),
        # The resource class is deprecated and ignored.
        ("repository(plugin):foo:pull", Scope("repository", "foo", ("pull",))),
        ("registry:catalog:*", Scope("registry", "catalog", ("*",))),
        # Actions may be empty (`/[a-z]*/`), and repeated ones count once.
        ("repository:foo:", Scope("repository", "foo", ())),
        ("repository:foo:pull,,pull,push", Scope("repository", "foo", ("pull", "push"))),
    ],
)
def test_parse_scope(value: str, expected: Scope) -> None:
    assert parse_scope(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "repository",
        "repository:foo",  # no actions part
        "repository::pull",  # no name
        ":foo:pull",  # no type
        "Repository:foo:pull",  # the type is lowercase
        "repo-sitory:foo:pull",
        "repository(:foo:pull",
        "repository(plugin)(x):foo:pull",
        "repository(Plugin):foo:pull",
        "repository:Foo/bar/Baz:pull",  # components are lowercase (only a host may not be)
        "repository:foo/:pull",
        "repository:/foo:pull",
        "repository:foo//bar:pull",
        "repository:foo/../bar:pull",
        "repository:-foo:pull",
        "repository:foo bar:pull",
        "repository:host:port/foo:pull",  # a port is digits
        "repository:foo:PULL",
        "repository:foo:pull;push",
        "repository:foo:pull,push2",
        "repository:foo:pull,**",
    ],
)
def test_parse_scope_refuses_what_is_not_of_the_grammar(value: str) -> None:
    assert parse_scope(value) is None


def test_scope_string_round_trips() -> None:
    for value in ("repository:localhost:5000/foo:pull,push", "registry:catalog:*"):
        scope = parse_scope(value)
        assert scope is not None
        assert str(scope) == value
        assert parse_scope(str(scope)) == scope


def test_parse_scopes_splits_on_spaces_and_drops_bad_entries() -> None:
    scopes = parse_scopes(
        [
            "repository:a/b:pull repository:c:push",
            "not-a-scope",
            "repository:localhost:5000/x:pull  registry:catalog:*",
            "",
        ]
    )
    assert scopes == [
        Scope("repository", "a/b", ("pull",)),
        Scope("repository", "c", ("push",)),
        Scope("repository", "localhost:5000/x", ("pull",)),
        Scope("registry", "catalog", ("*",)),
    ]
    assert parse_scopes([]) == []


# Challenges


def test_challenge_without_scope() -> None:
    assert (
        bearer_challenge("http://registry.test/v2/token", "cargohold")
        == 'Bearer realm="http://registry.test/v2/token",service="cargohold"'
    )


def test_challenge_with_scopes_and_error() -> None:
    challenge = bearer_challenge(
        "https://r.test/v2/token",
        "cargohold",
        [
            Scope("repository", "p/r/img", ("pull", "push")),
            Scope("repository", "localhost:5000/x", ("pull",)),
        ],
        "insufficient_scope",
    )
    assert challenge == (
        'Bearer realm="https://r.test/v2/token",service="cargohold",'
        'scope="repository:p/r/img:pull,push repository:localhost:5000/x:pull",'
        'error="insufficient_scope"'
    )


def test_challenge_with_error_and_no_scope() -> None:
    assert bearer_challenge("r", "s", error="invalid_token") == (
        'Bearer realm="r",service="s",error="invalid_token"'
    )


def test_challenge_quotes_backslashes_and_quotes() -> None:
    challenge = bearer_challenge('http://h/"x"', 'a\\b"c')
    assert challenge == r'Bearer realm="http://h/\"x\"",service="a\\b\"c"'


# Authorization headers


def _basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


def test_no_header_is_anonymous() -> None:
    assert parse_authorization(None) is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (_basic(b"alice:secret"), BasicCredentials("alice", "secret")),
        # Only the first colon separates: a password may hold more.
        (_basic(b"alice:se:cr:et"), BasicCredentials("alice", "se:cr:et")),
        (_basic(b"alice:"), BasicCredentials("alice", "")),
        (_basic("sa$ci:kéy".encode()), BasicCredentials("sa$ci", "kéy")),
        ("basic " + base64.b64encode(b"a:b").decode(), BasicCredentials("a", "b")),
        ("  BASIC   " + base64.b64encode(b"a:b").decode() + "  ", BasicCredentials("a", "b")),
        ("Bearer abc.DEF-_~+/.ghi", BearerToken("abc.DEF-_~+/.ghi")),
        ("bearer abc==", BearerToken("abc==")),
        ("BEARER x", BearerToken("x")),
    ],
)
def test_parse_authorization(header: str, expected: BasicCredentials | BearerToken) -> None:
    assert parse_authorization(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic dXNl=cjpw",  # padding inside
        "Basic dXNlcjpwYXN",  # truncated
        "Basic " + base64.b64encode(b"no-colon-here").decode(),
        "Basic " + base64.b64encode(b":password-without-user").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:\xfd").decode(),  # not UTF-8
        "Digest username=alice",
        "Token abc",
        "Negotiate YII=",
        "abc.def.ghi",
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "Bearer a=b",
        "Bearer tökén",
        'Bearer "quoted"',
        "Bearer a,b",
    ],
)
def test_malformed_authorization(header: str) -> None:
    with pytest.raises(MalformedAuthorization):
        parse_authorization(header)
