"""Real clients pulling through a proxy repository (a pull-through cache) of a reference
registry that stands in for Docker Hub: docker, podman, skopeo, containerd (ctr), helm 3 and
helm 4, each logged in to cargohold as the administrator.

Each client has a proxy repository of its own, ``test/hub-CLIENT``, so that each one meets a
cold cache: its first pull goes through to the upstream (one upstream GET per blob, only the
blobs it needs), its second pull from an empty local store makes no upstream blob or manifest
GET, and once the upstream is stopped, tags and digests it pulled before still pull into an
empty store, while content it never pulled fails with an error that says so. The repositories
have ``cache_ttl`` 0: every request for a tag revalidates it upstream with a HEAD, so with the
upstream stopped every pull by tag takes the stale-serving path (cargohold answers with a
``Warning``), which a clean pull proves each client accepts.

The reference registry is Docker Hub to cargohold (``CARGOHOLD_DOCKER_HUB_HOSTS``): the
one-segment ``alpine`` is ``library/alpine`` upstream.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
import requests

from tests.integration.access_log import ACCEPT_MANIFESTS, fetched_blobs, log_mark, wait_for_access
from tests.integration.clients import (
    ClientError,
    Containerd,
    DockerDaemon,
    Helm,
    OciImage,
    Podman,
    Skopeo,
    oci_image,
    oci_index,
)
from tests.integration.server import Server
from tests.integration.upstream import ReferenceRegistry

pytestmark = pytest.mark.clients

ClientName = Literal["docker", "podman", "skopeo", "containerd", "helm3", "helm4"]
CLIENTS: tuple[ClientName, ...] = ("docker", "podman", "skopeo", "containerd", "helm3", "helm4")
GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
LAYER_SIZE = 16 * 1024
CHART = "hello-proxy"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
NOT_CACHED = "is not cached and the upstream failed"
"""What cargohold says about content it never cached when the upstream fails."""


# --- the upstream -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Artifact:
    """An image or chart in the upstream, as a client names it under a proxy repository."""

    path: str
    """The name under the proxy repository: ``alpine``, ``team/app/api``, ``charts/NAME``."""
    upstream: str
    """The name upstream: ``library/alpine``, ``team/app/api``, ``charts/NAME``."""
    tag: str
    digest: str
    """The top-level digest, as the upstream serves it."""
    blobs: frozenset[str]
    """The blobs of the image for this machine's platform (of every image, for a chart)."""
    all_blobs: frozenset[str]
    """The blobs of every platform."""
    config: str | None = None
    """The config digest of the image for this machine's platform: the local image id."""


@dataclass(frozen=True)
class Hub:
    """The upstream and what it holds."""

    registry: ReferenceRegistry
    alpine: Artifact
    api: Artifact
    busybox: Artifact
    """An image no client pulls while the upstream is up."""
    chart: Artifact
    chart_package: bytes
    new_chart: Artifact
    """A chart version no client pulls while the upstream is up."""
    new_chart_package: bytes


def machine_arch() -> str:
    arch = GO_ARCH.get(platform.machine())
    if arch is None:
        pytest.fail(f"no test image for this machine's architecture {platform.machine()}")
    return arch


def upstream_digest(registry: ReferenceRegistry, name: str, tag: str) -> str:
    response = registry.request("HEAD", f"/v2/{name}/manifests/{tag}", headers=ACCEPT_MANIFESTS)
    assert response.status_code == 200, (name, tag, response.status_code)
    digest: str = response.headers["Docker-Content-Digest"]
    return digest


def image_artifact(
    registry: ReferenceRegistry, image: OciImage, path: str, upstream: str
) -> Artifact:
    """Seed ``image`` as ``upstream:TAG``; what a client pulls of it."""
    registry.seed(image, upstream)
    arch = machine_arch()
    [mine] = [m for m in image.manifests if m.platform in (None, ("linux", arch))]
    manifest: dict[str, Any] = json.loads(image.read_blob(mine.digest))
    config: str = manifest["config"]["digest"]
    blobs = frozenset([config, *(layer["digest"] for layer in manifest["layers"])])
    digest = upstream_digest(registry, upstream, image.tag)
    assert digest == image.digest
    all_blobs = frozenset(b.digest for b in image.blobs)
    assert blobs <= all_blobs
    return Artifact(path, upstream, image.tag, digest, blobs, all_blobs, config)


def chart_artifact(registry: ReferenceRegistry, helm: Helm, version: str) -> tuple[Artifact, bytes]:
    """``helm push`` a chart version to the upstream's ``charts/``."""
    chart = helm.package(CHART, version)
    pushed = helm.push(chart, f"oci://{registry.host}/charts")
    upstream = f"charts/{CHART}"
    response = registry.request(
        "GET", f"/v2/{upstream}/manifests/{version}", headers=ACCEPT_MANIFESTS
    )
    assert response.status_code == 200, response.text
    assert response.headers["Docker-Content-Digest"] == pushed
    manifest: dict[str, Any] = response.json()
    package = chart.package.read_bytes()
    [layer] = manifest["layers"]
    assert layer["digest"] == "sha256:" + hashlib.sha256(package).hexdigest()
    blobs = frozenset([manifest["config"]["digest"], layer["digest"]])
    return Artifact(upstream, upstream, version, pushed, blobs, blobs), package


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """The reference registry (open) holding a multi-arch ``library/alpine:3``, a single
    ``team/app/api:1``, ``library/busybox:1``, and ``charts/hello-proxy`` 0.1.0 and 0.2.0
    pushed by helm 3."""
    workdir = tmp_path_factory.mktemp("proxy-upstream")
    with ReferenceRegistry(workdir / "registry") as registry:
        layouts = workdir / "layouts"
        alpine = oci_index(layouts / "alpine", "3", layer_size=LAYER_SIZE)
        api = oci_image(layouts / "api", "1", layer_size=LAYER_SIZE)
        busybox = oci_image(layouts / "busybox", "1", layers=1, layer_size=LAYER_SIZE)
        pusher = Helm(workdir / "helm", "helm3")
        chart, chart_package = chart_artifact(registry, pusher, "0.1.0")
        new_chart, new_chart_package = chart_artifact(registry, pusher, "0.2.0")
        yield Hub(
            registry,
            alpine=image_artifact(registry, alpine, "alpine", "library/alpine"),
            api=image_artifact(registry, api, "team/app/api", "team/app/api"),
            busybox=image_artifact(registry, busybox, "busybox", "library/busybox"),
            chart=chart,
            chart_package=chart_package,
            new_chart=new_chart,
            new_chart_package=new_chart_package,
        )


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, hub: Hub) -> Iterator[Server]:
    """A cargohold of the module's own, with a proxy repository ``test/hub-CLIENT`` of the
    upstream for each client (``cache_ttl`` 0), which it takes for Docker Hub."""
    server = Server(tmp_path_factory.mktemp("proxy-cargohold") / "data")
    server.cli("project", "create", "test")
    for client in CLIENTS:
        server.cli(
            "repo",
            "create",
            "test",
            f"hub-{client}",
            "--type",
            "proxy",
            "--remote-url",
            hub.registry.url,
            "--cache-ttl",
            "0",
        )
    server.start(env={"CARGOHOLD_DOCKER_HUB_HOSTS": hub.registry.host})
    yield server
    server.stop()


def settle(registry: ReferenceRegistry) -> None:
    """Wait until the upstream logged every request answered so far: distribution writes an
    access line when its handler returns, a moment after the last byte went out. A request
    made now, once logged, comes after them."""
    sentinel = f"/v2/?settled={uuid.uuid4().hex}"
    requests.get(registry.url + sentinel, timeout=10).raise_for_status()
    registry.wait_for_log(lambda log: any(entry.uri == sentinel for entry in log))


@contextlib.contextmanager
def upstream_stopped(registry: ReferenceRegistry) -> Iterator[None]:
    """The upstream is down (connections refused), and up again afterwards, whatever happens."""
    registry.stop()
    try:
        with pytest.raises(requests.ConnectionError):
            requests.get(registry.url + "/v2/", timeout=5)
        yield
    finally:
        registry.start()


# --- the clients ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def docker(tmp_path_factory: pytest.TempPathFactory, proxy: Server) -> Iterator[DockerDaemon]:
    """One dockerd for the module, logged in to cargohold (``docker login``)."""
    with DockerDaemon(tmp_path_factory.mktemp("proxy-dockerd")) as daemon:
        daemon.login(proxy.host, *proxy.admin_auth)
        yield daemon


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    """One containerd for the module; ctr has no login and takes ``--user`` each time."""
    with Containerd(tmp_path_factory.mktemp("proxy-containerd")) as daemon:
        yield daemon


class Puller:
    """One client pulling through its own proxy repository ``test/hub-NAME``, into a local
    store it can empty."""

    def __init__(self, name: ClientName, server: Server, workdir: Path, hub: Hub) -> None:
        self.name = name
        self.server = server
        self.workdir = workdir
        self.hub = hub
        self.stores = 0
        self.repository = f"test/hub-{name}"

    def ref(self, artifact: Artifact, *, by_digest: bool = False) -> str:
        """``HOST/test/hub-NAME/PATH:TAG`` or ``...@DIGEST``."""
        sep, reference = ("@", artifact.digest) if by_digest else (":", artifact.tag)
        return f"{self.server.host}/{self.repository}/{artifact.path}{sep}{reference}"

    def image(self, artifact: Artifact) -> str:
        """The image name the server sees: ``test/hub-NAME/PATH``."""
        return f"{self.repository}/{artifact.path}"

    def next_store(self) -> Path:
        self.stores += 1
        return self.workdir / f"store-{self.stores}"

    # what each client does

    @property
    def artifacts(self) -> list[Artifact]:
        """What it pulls while the upstream is up."""
        return [self.hub.alpine, self.hub.api]

    @property
    def never_pulled(self) -> Artifact:
        """What it first pulls once the upstream is down."""
        return self.hub.busybox

    def blobs(self, artifact: Artifact) -> frozenset[str]:
        """The blobs it fetches of ``artifact``: its own platform's."""
        return artifact.blobs

    def fresh(self) -> None:
        """An empty local store, logged in to cargohold as the administrator."""
        raise NotImplementedError

    def pull(self, artifact: Artifact, *, by_digest: bool = False) -> str:
        """Pull into the current store; return the top-level digest the client got."""
        raise NotImplementedError


class DockerPuller(Puller):
    def __init__(self, server: Server, workdir: Path, hub: Hub, daemon: DockerDaemon) -> None:
        super().__init__("docker", server, workdir, hub)
        self.daemon = daemon

    def fresh(self) -> None:
        ids = self.daemon("image", "ls", "--all", "--quiet").split()
        if ids:
            self.daemon("image", "rm", "--force", *sorted(set(ids)))
        assert self.daemon("image", "ls", "--all", "--quiet").split() == []

    def pull(self, artifact: Artifact, *, by_digest: bool = False) -> str:
        ref = self.ref(artifact, by_digest=by_digest)
        output = self.daemon("pull", ref)
        [digest] = re.findall(rf"^Digest: ({DIGEST.pattern})$", output, re.MULTILINE)
        local = self.daemon.inspect(ref)
        assert local["Id"] == artifact.config
        assert f"{self.server.host}/{self.image(artifact)}@{digest}" in local["RepoDigests"]
        return str(digest)


class PodmanPuller(Puller):
    podman: Podman

    def fresh(self) -> None:
        self.podman = Podman(self.next_store())
        self.podman.login(self.server.host, *self.server.admin_auth)
        assert self.podman("image", "ls", "--all", "--quiet").split() == []

    def pull(self, artifact: Artifact, *, by_digest: bool = False) -> str:
        ref = self.ref(artifact, by_digest=by_digest)
        image_id = self.podman.pull(ref)
        assert artifact.config is not None
        assert image_id == artifact.config.removeprefix("sha256:")
        return self.podman.image_digest(ref)


class SkopeoPuller(Puller):
    """``skopeo copy --all`` into an OCI layout: every platform of an index."""

    skopeo: Skopeo
    layout: Path

    def blobs(self, artifact: Artifact) -> frozenset[str]:
        return artifact.all_blobs

    def fresh(self) -> None:
        store = self.next_store()
        self.skopeo = Skopeo(store / "skopeo")
        self.skopeo.login(self.server.host, *self.server.admin_auth)
        self.layout = store / "layout"
        assert not self.layout.exists()

    def pull(self, artifact: Artifact, *, by_digest: bool = False) -> str:
        name = f"{artifact.path.replace('/', '-')}-{'digest' if by_digest else artifact.tag}"
        src = "docker://" + self.ref(artifact, by_digest=by_digest)
        self.skopeo.copy(src, f"oci:{self.layout}:{name}", all_images=True)
        index = json.loads((self.layout / "index.json").read_text())
        [entry] = [
            m
            for m in index["manifests"]
            if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == name
        ]
        digest: str = entry["digest"]
        blobs = {p.name for p in (self.layout / "blobs" / "sha256").iterdir()}
        assert {b.removeprefix("sha256:") for b in artifact.all_blobs} <= blobs
        return digest


class ContainerdPuller(Puller):
    def __init__(self, server: Server, workdir: Path, hub: Hub, daemon: Containerd) -> None:
        super().__init__("containerd", server, workdir, hub)
        self.daemon = daemon

    def content(self) -> list[str]:
        return [row for row in self.daemon("content", "ls", "--quiet").split() if row]

    def fresh(self) -> None:
        names = list(self.daemon.images())
        if names:
            self.daemon("images", "rm", "--sync", *names)
        assert self.daemon.images() == {}
        assert self.content() == []

    def pull(self, artifact: Artifact, *, by_digest: bool = False) -> str:
        ref = self.ref(artifact, by_digest=by_digest)
        self.daemon.pull(ref, user=self.server.admin_creds)
        return self.daemon.images()[ref]


class HelmPuller(Puller):
    helm: Helm
    dest: Path

    @property
    def artifacts(self) -> list[Artifact]:
        return [self.hub.chart]

    @property
    def never_pulled(self) -> Artifact:
        return self.hub.new_chart

    def package(self, artifact: Artifact) -> bytes:
        return self.hub.chart_package if artifact == self.hub.chart else self.hub.new_chart_package

    def fresh(self) -> None:
        store = self.next_store()
        self.helm = Helm(store, "helm3" if self.name == "helm3" else "helm4")
        self.helm.login(self.server.host, *self.server.admin_auth)
        self.dest = store / "pulled"
        self.dest.mkdir(parents=True)

    def pull(self, artifact: Artifact, *, by_digest: bool = False) -> str:
        """``helm pull oci://HOST/test/hub-NAME/charts/CHART --version V`` (or ``...@DIGEST``)
        into an empty folder; the package must be the one pushed upstream."""
        ref = f"oci://{self.server.host}/{self.repository}/{artifact.path}"
        dest = self.dest / f"{artifact.tag}-{'digest' if by_digest else 'tag'}"
        dest.mkdir()
        args = [f"{ref}@{artifact.digest}"] if by_digest else [ref, "--version", artifact.tag]
        done = self.helm.run("pull", *args, "--plain-http", "-d", dest)
        output = done.stdout + done.stderr  # helm prints its summary on stderr
        [digest] = re.findall(rf"^Digest: ({DIGEST.pattern})$", output, re.MULTILINE)
        [package] = dest.iterdir()
        assert package.read_bytes() == self.package(artifact)
        return str(digest)


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest, tmp_path: Path, proxy: Server, hub: Hub) -> Puller:
    """Each client in turn; a daemon starts only for the client that needs it."""
    name: ClientName = request.param
    if name == "docker":
        return DockerPuller(proxy, tmp_path, hub, request.getfixturevalue("docker"))
    if name == "containerd":
        return ContainerdPuller(proxy, tmp_path, hub, request.getfixturevalue("containerd"))
    if name == "podman":
        return PodmanPuller(name, proxy, tmp_path, hub)
    if name == "skopeo":
        return SkopeoPuller(name, proxy, tmp_path, hub)
    return HelmPuller(name, proxy, tmp_path, hub)


# --- checks -----------------------------------------------------------------------------------


def served_to_client(server: Server, client: Puller, artifact: Artifact, mark: int) -> None:
    """Cargohold served every blob the client needs of ``artifact`` (GET, 200) since ``mark``:
    the client's store really was empty."""
    image, wanted = client.image(artifact), client.blobs(artifact)
    wait_for_access(server, lambda found: wanted <= fetched_blobs(found, image), after=mark)


def stale_served(server: Server, client: Puller, artifact: Artifact, mark: int) -> bool:
    """Cargohold logged serving the tag stale (the upstream could not revalidate it)."""
    line = re.compile(rf"proxy event=stale name={re.escape(client.image(artifact))}\b")
    return any(line.search(text) for text in server.log().splitlines()[mark:])


def pull_cold(client: Puller, artifact: Artifact, hub: Hub, server: Server) -> None:
    """First pull: through to the upstream, one upstream GET for each blob the client needs
    and none for the others (an index's other platforms are fetched on demand only)."""
    hub.registry.reset_counts()
    mark = log_mark(server)
    assert client.pull(artifact) == artifact.digest
    served_to_client(server, client, artifact, mark)
    settle(hub.registry)
    assert hub.registry.blob_requests() == Counter(dict.fromkeys(client.blobs(artifact), 1))
    manifests = hub.registry.manifest_requests()
    assert manifests, "the upstream served no manifest"
    assert max(manifests.values()) == 1, manifests


def pull_warm(client: Puller, artifact: Artifact, hub: Hub, server: Server) -> None:
    """Second pull into an empty store: served from the cache. The upstream only sees the
    HEAD that revalidates the tag (``cache_ttl`` 0), never a blob or manifest GET."""
    client.fresh()
    hub.registry.reset_counts()
    mark = log_mark(server)
    assert client.pull(artifact) == artifact.digest
    served_to_client(server, client, artifact, mark)
    settle(hub.registry)
    assert hub.registry.blob_requests() == Counter()
    assert hub.registry.manifest_requests() == Counter()
    heads = hub.registry.manifest_requests("HEAD")
    assert set(heads) == {f"{artifact.upstream}:{artifact.tag}"}, heads


def pull_offline(client: Puller, artifact: Artifact, server: Server) -> None:
    """The upstream is down: the tag (served stale) and the digest both pull, each into an
    empty store."""
    client.fresh()
    mark = log_mark(server)
    assert client.pull(artifact) == artifact.digest
    served_to_client(server, client, artifact, mark)
    assert stale_served(server, client, artifact, mark), server.log()[-3000:]

    client.fresh()
    mark = log_mark(server)
    assert client.pull(artifact, by_digest=True) == artifact.digest
    served_to_client(server, client, artifact, mark)


def assert_clear_failure(client: Puller, artifact: Artifact, hub: Hub) -> None:
    """Content never cached fails while the upstream is down, and the client shows why:
    what is missing, that it is not cached, and which upstream failed."""
    client.fresh()
    with pytest.raises(ClientError) as failure:
        client.pull(artifact)
    output = failure.value.stdout + failure.value.stderr
    assert NOT_CACHED in output, output
    assert f"{client.image(artifact)}:{artifact.tag}" in output, output
    assert hub.registry.url in output, output


# --- the test ---------------------------------------------------------------------------------


def test_pulls_through_the_proxy_and_from_its_cache_when_the_upstream_is_down(
    client: Puller, hub: Hub, proxy: Server
) -> None:
    client.fresh()
    for artifact in client.artifacts:
        pull_cold(client, artifact, hub, proxy)

    for artifact in client.artifacts:
        pull_warm(client, artifact, hub, proxy)

    with upstream_stopped(hub.registry):
        for artifact in client.artifacts:
            pull_offline(client, artifact, proxy)
        assert_clear_failure(client, client.never_pulled, hub)

    # The failure was the upstream's, and nothing of it stuck: it pulls once the upstream is up.
    client.fresh()
    assert client.pull(client.never_pulled) == client.never_pulled.digest
