"""Listing tags and the catalog over the real socket (distribution spec: "Listing Tags";
`/v2/_catalog` as distribution serves it). Both listings share one shape, so each test runs
on both: a `Listing` is what one test pushed and how to read it back."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.integration.oci_client import OciClient, next_link

# In "ASCIIbetical" order (Go's sort.Strings): '-' < '.' < digits < upper case < '_' < lower case.
TAGS = ["0", "1.0", "10", "9", "A", "B", "Z-9", "__", "_x", "a", "a-b", "a.b", "a_b", "latest"]
# '-' < '.' < '/' < digits < '_' < lower case; a name sorts before the names it prefixes.
IMAGES = ["0", "a", "a-b", "a.b", "a/b", "a_b", "b", "z9"]


@dataclass(frozen=True)
class Listing:
    path: str
    key: str
    pushed: list[str]
    """What the test pushed, in the order the listing owes."""
    prefix: str
    """Every item this test owns starts with it (others' items share the session server)."""

    def ours(self, items: list[str]) -> list[str]:
        return [item for item in items if item.startswith(self.prefix)]


def _tag_listing(oci: OciClient, name: str) -> Listing:
    image = oci.push_image(name, tag=None)
    shuffled = random.Random(0).sample(TAGS, len(TAGS))
    response = oci.put_manifest(name, image.digest, image.body, params={"tag": shuffled})
    assert response.status_code == 201, response.text
    return Listing(f"/v2/{name}/tags/list", "tags", TAGS, "")


def _catalog_listing(oci: OciClient) -> Listing:
    prefix = f"test/hosted/catalog-{uuid.uuid4().hex[:10]}/"
    for image in random.Random(0).sample(IMAGES, len(IMAGES)):
        oci.push_image(prefix + image)
    return Listing("/v2/_catalog", "repositories", [prefix + image for image in IMAGES], prefix)


@pytest.fixture(params=["tags", "catalog"])
def listing(request: pytest.FixtureRequest, oci: OciClient, name: str) -> Listing:
    return _tag_listing(oci, name) if request.param == "tags" else _catalog_listing(oci)


def _get(oci: OciClient, listing: Listing, **params: str) -> list[str]:
    response = oci.request("GET", listing.path, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    items: list[str] = response.json()[listing.key]
    return items


def test_listing_is_sorted_asciibetically(oci: OciClient, listing: Listing) -> None:
    items = _get(oci, listing)
    assert items == sorted(items)
    assert listing.ours(items) == listing.pushed


def test_tags_list_names_the_image(oci: OciClient, name: str) -> None:
    oci.push_image(name, "v1")
    response = oci.request("GET", f"/v2/{name}/tags/list")
    assert response.status_code == 200, response.text
    assert response.json() == {"name": name, "tags": ["v1"]}


@pytest.mark.parametrize("n", [1, 3, len(IMAGES), 1000])
def test_pagination_follows_link_until_exhausted(oci: OciClient, listing: Listing, n: int) -> None:
    pages = oci.pages(listing.path, listing.key, n)
    assert all(len(page) <= n for page in pages)
    collected = [item for page in pages for item in page]
    assert len(collected) == len(set(collected))
    assert collected == _get(oci, listing)
    assert listing.ours(collected) == listing.pushed


def test_first_page_links_to_the_next(oci: OciClient, listing: Listing) -> None:
    response = oci.request("GET", listing.path, params={"n": "2"})
    assert response.status_code == 200, response.text
    first = response.json()[listing.key]
    assert len(first) == 2
    link = next_link(response)
    assert link is not None
    target = urlsplit(link)
    assert target.path == listing.path
    assert parse_qs(target.query) == {"n": ["2"], "last": [first[-1]]}


def test_last_alone_lists_everything_after_it(oci: OciClient, listing: Listing) -> None:
    last = listing.pushed[2]
    items = _get(oci, listing, last=last)
    assert all(item > last for item in items)
    assert listing.ours(items) == listing.pushed[3:]


@pytest.mark.parametrize("n", [str(2**63), "9" * 5000], ids=["beyond-int64", "5000-digits"])
def test_huge_n_lists_everything(oci: OciClient, listing: Listing, n: str) -> None:
    response = oci.request("GET", listing.path, params={"n": n})
    assert response.status_code == 200, response.text
    assert response.json()[listing.key] == _get(oci, listing)
    assert "Link" not in response.headers


def test_n_zero_is_an_empty_list_without_link(oci: OciClient, listing: Listing) -> None:
    response = oci.request("GET", listing.path, params={"n": "0"})
    assert response.status_code == 200, response.text
    assert response.json()[listing.key] == []
    assert "Link" not in response.headers


@pytest.mark.parametrize("n", ["-1", "abc", "1.5", "0x10", "", "\uff15"])
def test_bad_n_is_400(oci: OciClient, listing: Listing, n: str) -> None:
    response = oci.request("GET", listing.path, params={"n": n})
    oci.expect_error(response, 400, "UNSUPPORTED")


@pytest.mark.parametrize(
    "unknown",
    ["test/hosted/never-pushed", "test/no-such-repository/image", "no-such-project/repo/image"],
    ids=["image-in-known-repository", "unknown-repository", "unknown-project"],
)
def test_tags_of_an_unknown_name_is_404(oci: OciClient, unknown: str) -> None:
    response = oci.request("GET", f"/v2/{unknown}/tags/list")
    oci.expect_error(response, 404, "NAME_UNKNOWN")
