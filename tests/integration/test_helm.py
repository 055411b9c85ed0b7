"""Helm 3 and Helm 4, the real binaries, against the real server: charts pushed, pulled and
shown over OCI, the digests helm prints, and the manifests helm writes (no top-level
mediaType; helm 4 PUTs by digest, then by tag)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Literal

import pytest
import requests

from tests.integration.access_log import any_access, wait_for_access
from tests.integration.clients import Chart, Helm
from tests.integration.oci_client import OCI_MANIFEST, sha256
from tests.integration.server import Server

pytestmark = pytest.mark.clients

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"

HelmName = Literal["helm3", "helm4"]


@pytest.fixture(params=["helm3", "helm4"])
def helm_name(request: pytest.FixtureRequest) -> HelmName:
    name: HelmName = request.param
    return name


def logged_in(helm: Helm, server: Server) -> Helm:
    """``helm registry login`` as the administrator, the password on stdin."""
    helm.login(server.host, *server.admin_auth)
    return helm


@pytest.fixture
def helm(helm_name: HelmName, tmp_path: Path, server: Server) -> Helm:
    """The helm that pushes (and packages), logged in to the server."""
    return logged_in(Helm(tmp_path / "pusher", helm_name), server)


@pytest.fixture
def puller(helm_name: HelmName, tmp_path: Path, server: Server) -> Helm:
    """The same helm with its own config, cache and login, so that nothing comes from the
    pusher's."""
    return logged_in(Helm(tmp_path / "puller", helm_name), server)


def chart_name() -> str:
    return f"chart-{uuid.uuid4().hex[:8]}"


def push(helm: Helm, server: Server, name: str, chart: Chart) -> tuple[str, str]:
    """Push ``chart`` under ``name``; return the digest helm printed and the chart's
    repository (``name/CHART``)."""
    digest = helm.push(chart, f"oci://{server.host}/{name}")
    return digest, f"{name}/{chart.name}"


def get_manifest(server: Server, repository: str, reference: str) -> requests.Response:
    response = requests.get(
        f"{server.url}/v2/{repository}/manifests/{reference}",
        headers={"Accept": OCI_MANIFEST},
        auth=server.admin_auth,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response


def test_pull_returns_the_pushed_package(
    helm: Helm, puller: Helm, server: Server, name: str, tmp_path: Path
) -> None:
    chart = helm.package(chart_name(), "1.2.3")
    _, repository = push(helm, server, name, chart)
    pulled = puller.pull(f"oci://{server.host}/{repository}", "1.2.3", tmp_path / "pulled")
    assert pulled.read_bytes() == chart.package.read_bytes()


def test_show_chart_prints_name_and_version(
    helm: Helm, puller: Helm, server: Server, name: str
) -> None:
    chart = helm.package(chart_name(), "3.4.5", app_version="9.9.9")
    _, repository = push(helm, server, name, chart)
    lines = puller.show_chart(f"oci://{server.host}/{repository}", "3.4.5").splitlines()
    assert f"name: {chart.name}" in lines
    assert "version: 3.4.5" in lines
    assert "appVersion: 9.9.9" in lines


def test_printed_digest_is_the_manifest_served_by_tag(
    helm: Helm, server: Server, name: str
) -> None:
    chart = helm.package(chart_name(), "0.7.0")
    digest, repository = push(helm, server, name, chart)

    by_tag = get_manifest(server, repository, "0.7.0")
    assert by_tag.headers["Docker-Content-Digest"] == digest
    assert sha256(by_tag.content) == digest
    # Helm writes no top-level mediaType; the server infers it and serves it as OCI.
    manifest: dict[str, Any] = json.loads(by_tag.content)
    assert "mediaType" not in manifest
    assert by_tag.headers["Content-Type"] == OCI_MANIFEST
    assert manifest["config"]["mediaType"] == HELM_CONFIG
    [layer] = manifest["layers"]
    assert layer["mediaType"] == HELM_CHART_LAYER
    assert layer["digest"] == sha256(chart.package.read_bytes())
    assert layer["size"] == chart.package.stat().st_size

    by_digest = get_manifest(server, repository, digest)
    assert by_digest.content == by_tag.content
    assert by_digest.headers["Content-Type"] == OCI_MANIFEST

    blob = requests.get(
        f"{server.url}/v2/{repository}/blobs/{layer['digest']}",
        auth=server.admin_auth,
        timeout=30,
    )
    assert blob.status_code == 200, blob.text
    assert blob.headers["Docker-Content-Digest"] == layer["digest"]
    assert blob.content == chart.package.read_bytes()


def test_two_versions_are_both_listed_and_pulled(
    helm: Helm, puller: Helm, server: Server, name: str, tmp_path: Path
) -> None:
    chart_id = chart_name()
    first = helm.package(chart_id, "0.1.0")
    second = helm.package(chart_id, "0.2.0")
    first_digest, repository = push(helm, server, name, first)
    second_digest, _ = push(helm, server, name, second)
    assert first_digest != second_digest

    tags = requests.get(
        f"{server.url}/v2/{repository}/tags/list", auth=server.admin_auth, timeout=30
    )
    assert tags.status_code == 200, tags.text
    assert tags.json() == {"name": repository, "tags": ["0.1.0", "0.2.0"]}

    ref = f"oci://{server.host}/{repository}"
    for chart, digest in [(first, first_digest), (second, second_digest)]:
        pulled = puller.pull(ref, chart.version, tmp_path / "pulled" / chart.version)
        assert pulled.read_bytes() == chart.package.read_bytes()
        assert (
            get_manifest(server, repository, chart.version).headers["Docker-Content-Digest"]
            == digest
        )


def test_manifest_puts_each_succeed(helm: Helm, server: Server, name: str) -> None:
    """Helm 3 PUTs the manifest by tag; helm 4 PUTs it by digest, then by tag: every one of
    those PUTs must be accepted."""
    chart = helm.package(chart_name(), "2.0.0")
    digest, repository = push(helm, server, name, chart)
    prefix = f"/v2/{repository}/manifests/"
    agent = f"Helm/{helm.major}."

    # The access log line is written once the answer is sent: helm may have exited first.
    log = wait_for_access(
        server, any_access(lambda a: a.method == "PUT" and a.path == prefix + "2.0.0")
    )
    puts = [a for a in log if a.method == "PUT" and a.path.startswith(prefix)]
    assert all(a.agent.startswith(agent) for a in puts), puts
    expected = [prefix + "2.0.0"] if helm.major == 3 else [prefix + digest, prefix + "2.0.0"]
    assert [(a.path, a.status) for a in puts] == [(p, 201) for p in expected]
    assert get_manifest(server, repository, digest).headers["Docker-Content-Digest"] == digest
