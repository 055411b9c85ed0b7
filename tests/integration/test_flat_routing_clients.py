"""Real clients through flat routing: docker, podman, skopeo, containerd (ctr), helm 3 and
helm 4 push the same content under a flat alias, under the catch-all, under a canonical name
and under a host name bound to a repository, and pull it back, from an empty local store,
under each of those names and under the canonical names behind them: the digests are equal.
Then a "Nexus-style" shell script, which pulls by old Nexus paths (`HOST/library/nginx:1`,
`HOST/nginx:1`, `HOST/docker-remote/app:1`) with docker and skopeo, runs unchanged against
cargohold once only its registry host is replaced.

The module's server (`routes`):

| repository    | reached as                                                   |
|---------------|--------------------------------------------------------------|
| common/mirror | `common/external/NAME` (flat alias), `common/mirror/NAME`      |
| team/catch    | `NAME` (the catch-all), `team/catch/NAME`                      |
| common/hosted | `common/hosted/NAME` (canonical only)                          |
| team/local    | `localhost:PORT/NAME` (bound to the host `localhost`),          |
|               | `127.0.0.1:PORT/team/local/NAME`                               |

`localhost` is the one host name that resolves here without DNS (to 127.0.0.1, like the
server's address): binding it to a repository is how real clients exercise host routing.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
import requests

from tests.integration.access_log import (
    ACCEPT_MANIFESTS,
    Access,
    log_mark,
    wait_for_access,
)
from tests.integration.auth_support import cli
from tests.integration.clients import (
    Containerd,
    DockerDaemon,
    Helm,
    OciImage,
    Podman,
    Skopeo,
    find_binary,
    oci_image,
    wait_until,
)
from tests.integration.server import Server
from tests.integration.upstream import ReferenceRegistry

pytestmark = pytest.mark.clients

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
LAYER_SIZE = 8 * 1024
TAG = "1"

Form = Literal["alias", "catch-all", "canonical", "bound"]
FORMS: tuple[Form, ...] = ("alias", "catch-all", "canonical", "bound")


def machine_platform() -> tuple[str, str]:
    arch = GO_ARCH.get(platform.machine())
    if arch is None:
        pytest.fail(f"no test image for this machine's architecture {platform.machine()}")
    return ("linux", arch)


def small_image(layout: Path, tag: str = TAG) -> OciImage:
    return oci_image(layout, tag, platforms=[machine_platform()], layers=1, layer_size=LAYER_SIZE)


@dataclass(frozen=True)
class Routes:
    server: Server

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def bound_host(self) -> str:
        return f"localhost:{self.server.port}"

    def typed(self, form: Form, image: str) -> tuple[str, str]:
        """(registry host, name) as a client types them to reach `image` through `form`."""
        return {
            "alias": (self.host, f"common/external/{image}"),
            "catch-all": (self.host, image),
            "canonical": (self.host, f"common/hosted/{image}"),
            "bound": (self.bound_host, image),
        }[form]

    def canonical(self, form: Form, image: str) -> tuple[str, str]:
        """(registry host, name) of the same image under its repository's canonical prefix."""
        return {
            "alias": (self.host, f"common/mirror/{image}"),
            "catch-all": (self.host, f"team/catch/{image}"),
            "canonical": (self.host, f"common/hosted/{image}"),
            "bound": (self.host, f"team/local/{image}"),
        }[form]

    def refs(self, form: Form, image: str) -> list[str]:
        """`HOST/NAME:TAG` under the typed name and the canonical one (once if the same)."""
        found = []
        for host, name in (self.typed(form, image), self.canonical(form, image)):
            ref = f"{host}/{name}:{TAG}"
            if ref not in found:
                found.append(ref)
        return found

    def served_digest(self, form: Form, image: str) -> str:
        """The digest the server holds under the canonical name (asked over the protocol)."""
        _, name = self.canonical(form, image)
        response = requests.head(
            f"{self.server.url}/v2/{name}/manifests/{TAG}",
            headers=ACCEPT_MANIFESTS,
            auth=self.server.admin_auth,
            timeout=30,
        )
        assert response.status_code == 200, (name, response.status_code)
        digest: str = response.headers["Docker-Content-Digest"]
        return digest


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Routes]:
    server = Server(tmp_path_factory.mktemp("flat-clients") / "data")
    for project in ("common", "team"):
        cli(server, "project", "create", project)
    cli(server, "repo", "create", "common", "hosted")
    cli(server, "repo", "create", "common", "mirror", "--flat-alias-prefix", "common/external/")
    cli(server, "repo", "create", "team", "catch", "--catch-all")
    cli(server, "repo", "create", "team", "local", "--host-name", "localhost")
    server.start()
    yield Routes(server)
    server.stop()


def manifest_request(method: str, status: int, name: str) -> Callable[[list[Access]], bool]:
    """For `wait_for_access`: the server answered a manifest request under `name`."""
    return lambda found: any(
        a.method == method and a.status == status and a.in_image(name, "manifests") for a in found
    )


def pushed_under(routes: Routes, form: Form, image: str, mark: int) -> None:
    """The server took the manifest PUT under the typed name (from the typed host)."""
    _, name = routes.typed(form, image)
    wait_for_access(routes.server, manifest_request("PUT", 201, name), after=mark)


def pushes_and_pulls(
    routes: Routes,
    client: str,
    expected: str | None,
    push: Callable[[str], str],
    fresh: Callable[[], None],
    pull: Callable[[str], str],
) -> None:
    """`push(ref)` the content under each typed form (each returns the digest it reports);
    then, each time from an empty store, `pull(ref)` under the typed and the canonical name
    of each: every digest is `expected` (when None: the first push's, for clients that
    compress layers themselves), and the server holds it under the canonical name."""
    for form in FORMS:
        image = f"{client}-{form}"
        host, name = routes.typed(form, image)
        mark = log_mark(routes.server)
        digest = push(f"{host}/{name}:{TAG}")
        expected = expected or digest
        assert DIGEST.fullmatch(expected), expected
        assert digest == expected, (client, form)
        pushed_under(routes, form, image, mark)
        assert routes.served_digest(form, image) == expected
    for form in FORMS:
        for ref in routes.refs(form, f"{client}-{form}"):
            fresh()
            mark = log_mark(routes.server)
            assert pull(ref) == expected, (client, ref)
            # The manifest came from the server, under the name in the reference.
            name = ref.split("/", 1)[1].rsplit(":", 1)[0]
            wait_for_access(routes.server, manifest_request("GET", 200, name), after=mark)


# --- the clients ------------------------------------------------------------------------------


def test_docker(routes: Routes, tmp_path: Path) -> None:
    image = small_image(tmp_path / "layout")
    with DockerDaemon(tmp_path / "docker") as docker:
        docker.login(routes.host, *routes.server.admin_auth)
        docker.login(routes.bound_host, *routes.server.admin_auth)
        local = f"{routes.host}/common/external/docker-alias:{TAG}"
        docker.load(Skopeo(tmp_path / "skopeo"), image.ref, local)

        def push(ref: str) -> str:
            if ref != local:
                docker.tag(local, ref)
            return docker.push(ref)

        def fresh() -> None:
            def emptied() -> bool:
                ids = docker("image", "ls", "--all", "--quiet").split()
                if ids:
                    docker("image", "rm", "--force", *sorted(set(ids)))
                return docker("image", "ls", "--all", "--quiet").split() == []

            wait_until(emptied, timeout=30, what="an empty docker image store")

        def pull(ref: str) -> str:
            digest = docker.pull(ref)
            assert (
                docker.inspect(ref)["Id"]
                == json.loads(image.read_blob(image.digest))["config"]["digest"]
            )
            return digest

        pushes_and_pulls(routes, "docker", None, push, fresh, pull)


def test_podman(routes: Routes, tmp_path: Path) -> None:
    image = small_image(tmp_path / "layout")
    pusher = Podman(tmp_path / "pusher")
    pusher.login(routes.host, *routes.server.admin_auth)
    pusher.login(routes.bound_host, *routes.server.admin_auth)
    image_id = pusher.pull(image.ref)
    stores = iter(range(100))
    puller: list[Podman] = []

    def push(ref: str) -> str:
        digestfile = tmp_path / f"digest-{uuid.uuid4().hex[:6]}"
        pusher(
            "push",
            "--tls-verify=false",
            "--format",
            "oci",
            "--digestfile",
            digestfile,
            image_id,
            f"docker://{ref}",
        )
        return digestfile.read_text().strip()

    def fresh() -> None:
        podman = Podman(tmp_path / f"store-{next(stores)}")
        podman.login(routes.host, *routes.server.admin_auth)
        podman.login(routes.bound_host, *routes.server.admin_auth)
        assert podman("image", "ls", "--all", "--quiet").split() == []
        puller[:] = [podman]

    def pull(ref: str) -> str:
        [podman] = puller
        assert podman.pull(ref) == image_id.strip()
        return podman.image_digest(ref)

    pushes_and_pulls(routes, "podman", None, push, fresh, pull)


def test_skopeo(routes: Routes, tmp_path: Path) -> None:
    image = small_image(tmp_path / "layout")
    skopeo = Skopeo(tmp_path / "skopeo")
    skopeo.login(routes.host, *routes.server.admin_auth)
    skopeo.login(routes.bound_host, *routes.server.admin_auth)
    layouts = iter(range(100))
    layout: list[Path] = []

    def push(ref: str) -> str:
        skopeo.copy(image.ref, f"docker://{ref}")
        digest: str = skopeo.inspect(f"docker://{ref}", raw=False)["Digest"]
        return digest

    def fresh() -> None:
        path = tmp_path / f"pulled-{next(layouts)}"
        assert not path.exists()
        layout[:] = [path]

    def pull(ref: str) -> str:
        [path] = layout
        skopeo.copy(f"docker://{ref}", f"oci:{path}:{TAG}")
        [entry] = json.loads((path / "index.json").read_text())["manifests"]
        blobs = {p.name for p in (path / "blobs" / "sha256").iterdir()}
        assert {b.digest.removeprefix("sha256:") for b in image.blobs} <= blobs
        digest: str = entry["digest"]
        return digest

    pushes_and_pulls(routes, "skopeo", image.digest, push, fresh, pull)


def oci_archive(image: OciImage, path: Path) -> Path:
    """The image's OCI layout as a tar, as `ctr images import` takes it."""
    with tarfile.open(path, "w") as tar:
        for entry in sorted(image.layout.rglob("*")):
            tar.add(entry, arcname=str(entry.relative_to(image.layout)), recursive=False)
    return path


def test_containerd(routes: Routes, tmp_path: Path) -> None:
    image = small_image(tmp_path / "layout")
    archive = oci_archive(image, tmp_path / "image.tar")
    creds = routes.server.admin_creds
    with Containerd(tmp_path / "containerd") as ctr:
        base = f"{routes.host}/common/external/containerd-alias"
        ctr("images", "import", "--base-name", base, archive)
        local = f"{base}:{TAG}"
        assert ctr.images()[local] == image.digest

        def push(ref: str) -> str:
            if ref != local:
                ctr("images", "tag", "--force", local, ref)
            ctr.push(ref, user=creds)
            return ctr.images()[ref]

        def fresh() -> None:
            names = list(ctr.images())
            if names:
                ctr("images", "rm", "--sync", *names)
            assert ctr.images() == {}
            assert ctr("content", "ls", "--quiet").split() == []

        def pull(ref: str) -> str:
            ctr.pull(ref, user=creds)
            return ctr.images()[ref]

        pushes_and_pulls(routes, "containerd", image.digest, push, fresh, pull)


@pytest.mark.parametrize("helm_name", ["helm3", "helm4"])
def test_helm(routes: Routes, tmp_path: Path, helm_name: Literal["helm3", "helm4"]) -> None:
    """Charts are named by helm: `oci://HOST/PATH` + `/CHART`; the catch-all and the bound
    host take `oci://HOST` alone."""
    helm = Helm(tmp_path / "helm", helm_name)
    helm.login(routes.host, *routes.server.admin_auth)
    helm.login(routes.bound_host, *routes.server.admin_auth)
    package = helm.package(f"{helm_name}-chart", TAG + ".0.0")
    version = package.version
    digests: dict[str, str] = {}
    for form in FORMS:
        host, name = routes.typed(form, package.name)
        path = name.rsplit("/", 1)[0] if "/" in name else ""
        mark = log_mark(routes.server)
        digests[form] = helm.push(package, f"oci://{host}/{path}".rstrip("/"))
        wait_for_access(routes.server, manifest_request("PUT", 201, name), after=mark)
    # The same chart: the same manifest digest under every name.
    assert len(set(digests.values())) == 1, digests
    for form in FORMS:
        for host, name in {routes.typed(form, package.name), routes.canonical(form, package.name)}:
            puller = Helm(tmp_path / f"puller-{uuid.uuid4().hex[:6]}", helm_name)
            puller.login(host, *routes.server.admin_auth)
            dest = tmp_path / f"pulled-{uuid.uuid4().hex[:6]}"
            dest.mkdir()
            done = puller.run(
                "pull", f"oci://{host}/{name}", "--version", version, "--plain-http", "-d", dest
            )
            found = DIGEST.findall(done.stdout + done.stderr)
            assert found and found[-1] == digests[form], (host, name, done.stdout + done.stderr)
            [pulled] = dest.iterdir()
            assert pulled.read_bytes() == package.package.read_bytes()


# --- a Nexus-style script ---------------------------------------------------------------------

NEXUS_HOST = "nexus.example.ru:8082"

NEXUS_SCRIPT = """#!/usr/bin/env bash
# Pull what the deployment needs from the company registry (Nexus docker-group connector).
set -euo pipefail
REGISTRY=nexus.example.ru:8082

echo "$REGISTRY_PASSWORD" | docker login "$REGISTRY" -u "$REGISTRY_USER" --password-stdin
docker pull "$REGISTRY/library/nginx:1"
docker pull "$REGISTRY/nginx:1"
docker pull "$REGISTRY/docker-remote/app:1"
docker image inspect --format '{{json .RepoDigests}}' "$REGISTRY/docker-remote/app:1"

CREDS="$REGISTRY_USER:$REGISTRY_PASSWORD"
skopeo inspect --tls-verify=false --creds "$CREDS" --format '{{.Digest}}' \
    "docker://$REGISTRY/library/nginx:1"
skopeo copy --src-tls-verify=false --src-creds "$CREDS" \
    "docker://$REGISTRY/docker-remote/app:1" "oci:$OUT/app:1"
skopeo copy --src-tls-verify=false --src-creds "$CREDS" \
    "docker://$REGISTRY/nginx:1" "oci:$OUT/nginx:1"
echo done
"""


@dataclass(frozen=True)
class Nexus:
    """The reference registry as Docker Hub, and a cargohold in Nexus's place."""

    registry: ReferenceRegistry
    server: Server
    nginx: str
    app: str


@pytest.fixture(scope="module")
def nexus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nexus]:
    """Docker Hub (the reference registry, holding `library/nginx:1`) proxied by the
    catch-all `hub/dockerhub`; `legacy/remote`, a hosted repository with the alias
    `docker-remote/`, holding `app:1` (what an Artifactory `docker-remote` held)."""
    workdir = tmp_path_factory.mktemp("nexus")
    with ReferenceRegistry(workdir / "hub") as registry:
        nginx = registry.seed(small_image(workdir / "nginx"), "library/nginx")
        server = Server(workdir / "data")
        cli(server, "project", "create", "hub")
        cli(server, "project", "create", "legacy")
        server.cli(
            "repo",
            "create",
            "hub",
            "dockerhub",
            "--type",
            "proxy",
            "--remote-url",
            registry.url,
            "--catch-all",
        )
        cli(server, "repo", "create", "legacy", "remote", "--flat-alias-prefix", "docker-remote")
        server.start(env={"CARGOHOLD_DOCKER_HUB_HOSTS": registry.host})
        try:
            app = small_image(workdir / "app")
            Skopeo(workdir / "skopeo").copy(
                app.ref,
                f"docker://{server.host}/legacy/remote/app:1",
                dest_creds=server.admin_creds,
            )
            yield Nexus(registry, server, nginx, app.digest)
        finally:
            server.stop()


def test_a_nexus_style_script_runs_unchanged_but_for_the_host(nexus: Nexus, tmp_path: Path) -> None:
    script = NEXUS_SCRIPT.replace(NEXUS_HOST, nexus.server.host)
    assert script.count(nexus.server.host) == 1  # the one line that names the registry
    assert script.replace(nexus.server.host, NEXUS_HOST) == NEXUS_SCRIPT
    path = tmp_path / "pull.sh"
    path.write_text(script)
    # The clients the script calls, by name, as on the machine it came from.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").symlink_to(find_binary("docker", path="/usr/bin:/bin"))
    (bin_dir / "skopeo").symlink_to(find_binary("skopeo"))
    out = tmp_path / "out"
    out.mkdir()
    nexus.registry.reset_counts()
    with DockerDaemon(tmp_path / "docker") as docker:
        skopeo = Skopeo(tmp_path / "skopeo")
        user, password = nexus.server.admin_auth
        env = {
            **os.environ,
            **docker.env,
            **skopeo.env,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "REGISTRY_USER": user,
            "REGISTRY_PASSWORD": password,
            "OUT": str(out),
        }
        done = subprocess.run(
            [shutil.which("bash") or "/bin/bash", str(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, output
        assert output.rstrip().endswith("done"), output
        pulled = re.findall(rf"^Digest: ({DIGEST.pattern})$", done.stdout, re.MULTILINE)
        assert pulled == [nexus.nginx, nexus.nginx, nexus.app], output
        assert f'"{nexus.server.host}/docker-remote/app@{nexus.app}"' in done.stdout
        assert f"\n{nexus.nginx}\n" in done.stdout  # skopeo inspect
        for name, digest in (("app", nexus.app), ("nginx", nexus.nginx)):
            index = json.loads((out / name / "index.json").read_text())
            assert [m["digest"] for m in index["manifests"]] == [digest]
        # docker keeps what it pulled under the names the script used.
        assert set(docker.inspect(f"{nexus.server.host}/nginx:1")["RepoDigests"]) == {
            f"{nexus.server.host}/library/nginx@{nexus.nginx}",
            f"{nexus.server.host}/nginx@{nexus.nginx}",
        }
    # Upstream, both `library/nginx` and `nginx` were `library/nginx`.
    log = nexus.registry.wait_for_log(lambda log: bool(log))
    upstream = {entry.path for entry in log if entry.path != "/v2/"}
    assert upstream and all(p.startswith("/v2/library/nginx/") for p in upstream), upstream
