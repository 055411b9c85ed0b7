"""Deleting tags, manifests and blobs over the real socket (distribution spec: "Content
Management"), including what the reference registry gets wrong: nothing still in use by
an index or a manifest of the same image can be deleted from under it."""

from __future__ import annotations

import json
import os

import pytest

from tests.integration.oci_client import OCI_MANIFEST, OciClient, Pushed, descriptor, sha256
from tests.integration.server import Server


def _tagged(oci: OciClient, name: str, *tags: str) -> Pushed:
    """An image pushed by digest with `?tag=` for each of `tags`."""
    image = oci.push_image(name, tag=None)
    response = oci.put_manifest(name, image.digest, image.body, params={"tag": list(tags)})
    assert response.status_code == 201, response.text
    return image


def test_delete_manifest_by_digest_removes_it_and_its_tags(oci: OciClient, name: str) -> None:
    image = _tagged(oci, name, "a", "b")
    response = oci.request("DELETE", f"/v2/{name}/manifests/{image.digest}")
    assert response.status_code == 202, response.text
    for reference in (image.digest, "a", "b"):
        oci.expect_error(oci.get_manifest(name, reference), 404, "MANIFEST_UNKNOWN")
    assert oci.tags(name) == []


def test_delete_tag_keeps_the_manifest(oci: OciClient, name: str) -> None:
    image = _tagged(oci, name, "v1", "v2")
    response = oci.request("DELETE", f"/v2/{name}/manifests/v1")
    assert response.status_code == 202, response.text
    oci.expect_error(oci.get_manifest(name, "v1"), 404, "MANIFEST_UNKNOWN")
    assert oci.get_manifest(name, image.digest).content == image.body
    assert oci.get_manifest(name, "v2").content == image.body
    assert oci.tags(name) == ["v2"]


@pytest.mark.parametrize("image_pushed", [True, False], ids=["known-image", "unknown-image"])
@pytest.mark.parametrize(
    "reference", ["no-such-tag", sha256(b"never pushed")], ids=["tag", "digest"]
)
def test_delete_unknown_manifest_is_404(
    oci: OciClient, name: str, image_pushed: bool, reference: str
) -> None:
    if image_pushed:
        oci.push_image(name)
    response = oci.request("DELETE", f"/v2/{name}/manifests/{reference}")
    oci.expect_error(response, 404, "MANIFEST_UNKNOWN")


def test_child_of_an_index_cannot_be_deleted_before_the_index(oci: OciClient, name: str) -> None:
    child = oci.push_image(name, tag=None)
    index = oci.push_index(name, [child], tag="multi")
    refused = oci.request("DELETE", f"/v2/{name}/manifests/{child.digest}")
    error = oci.error_entry(refused, 409, "DENIED")
    assert index.digest in error["message"]
    assert oci.get_manifest(name, child.digest).content == child.body

    deleted = oci.request("DELETE", f"/v2/{name}/manifests/{index.digest}")
    assert deleted.status_code == 202, deleted.text
    deleted = oci.request("DELETE", f"/v2/{name}/manifests/{child.digest}")
    assert deleted.status_code == 202, deleted.text
    oci.expect_error(oci.get_manifest(name, child.digest), 404, "MANIFEST_UNKNOWN")


def test_deleted_referrer_leaves_the_referrers_list(oci: OciClient, name: str) -> None:
    subject = oci.push_image(name)
    referrer = oci.push_image(name, tag=None, subject=descriptor(OCI_MANIFEST, subject.body))
    referrers = f"/v2/{name}/referrers/{subject.digest}"
    assert [entry["digest"] for entry in oci.request("GET", referrers).json()["manifests"]] == [
        referrer.digest
    ]
    deleted = oci.request("DELETE", f"/v2/{name}/manifests/{referrer.digest}")
    assert deleted.status_code == 202, deleted.text
    assert oci.request("GET", referrers).json()["manifests"] == []


def test_delete_blob(oci: OciClient, name: str) -> None:
    digest = oci.push_blob(name, os.urandom(512))
    response = oci.request("DELETE", f"/v2/{name}/blobs/{digest}")
    assert response.status_code == 202, response.text
    oci.expect_error(oci.request("GET", f"/v2/{name}/blobs/{digest}"), 404, "BLOB_UNKNOWN")


@pytest.mark.parametrize(
    ("image_pushed", "held_elsewhere"),
    [(True, False), (False, False), (True, True)],
    ids=["known-image", "unknown-image", "only-in-another-image"],
)
def test_delete_unknown_blob_is_404(
    oci: OciClient, server: Server, name: str, image_pushed: bool, held_elsewhere: bool
) -> None:
    data, other = os.urandom(512), server.unique_name()
    if image_pushed:
        oci.push_image(name)
    if held_elsewhere:
        oci.push_blob(other, data)
    response = oci.request("DELETE", f"/v2/{name}/blobs/{sha256(data)}")
    oci.expect_error(response, 404, "BLOB_UNKNOWN")
    if held_elsewhere:
        assert oci.request("GET", f"/v2/{other}/blobs/{sha256(data)}").content == data


@pytest.mark.parametrize("role", ["config", "layer"])
def test_blob_used_by_a_manifest_cannot_be_deleted(oci: OciClient, name: str, role: str) -> None:
    image = oci.push_image(name)
    manifest = json.loads(image.body)
    digest = (manifest["config"] if role == "config" else manifest["layers"][0])["digest"]
    blob = f"/v2/{name}/blobs/{digest}"
    error = oci.error_entry(oci.request("DELETE", blob), 409, "DENIED")
    assert image.digest in error["message"]
    assert oci.request("GET", blob).status_code == 200

    deleted = oci.request("DELETE", f"/v2/{name}/manifests/{image.digest}")
    assert deleted.status_code == 202, deleted.text
    deleted = oci.request("DELETE", blob)
    assert deleted.status_code == 202, deleted.text
