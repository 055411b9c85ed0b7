"""Every real client signs in to the real server (Docker token auth) as a user and as a robot,
pushes and pulls back the same digest; anonymous pulls from anonymous-read repositories work
with no login while anonymous pushes there fail; a wrong password fails `docker login`; a
reader can pull but not push.

The server is this module's own, so that its accounts, failed sign-ins and log belong to these
tests only:

- project `team` (private) with the hosted repository `apps`; user `dev` is its developer,
  user `viewer` its reader, and the robot `sa$ci` (created as `ci`) may pull and push there;
- project `pub` (anonymous read) with the repository `images`;
- project `priv` (private) with `open` (an anonymous-read repository) and `closed`.

The robot's name holds a `$`: on a shell command line it must be single-quoted
(`docker login -u 'sa$ci' --password-stdin HOST`). The harness passes argv lists, so no shell
is involved here; the token request's `account` parameter in the server log proves the name
arrived intact.
"""

from __future__ import annotations

import base64
import copy
import gzip
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
import requests

from tests.integration.access_log import ACCEPT_MANIFESTS, Access, accesses, log_mark
from tests.integration.clients import (
    Buildah,
    ClientError,
    Containerd,
    DockerDaemon,
    Helm,
    OciImage,
    Oras,
    Podman,
    Skopeo,
    oci_image,
    write_json,
)
from tests.integration.server import Server

pytestmark = pytest.mark.clients

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
LAYER_SIZE = 4 * 1024
# A password a shell would mangle if it ever went through one unquoted.
DEV_PASSWORD = "dev pa$$word: 'quoted' \"too\""
VIEWER_PASSWORD = "viewer-pa$sword"

# What each client prints when the server refuses it. A client without a token is challenged
# (401); once it holds a token without the needed action, the server answers 401 with
# `error="insufficient_scope"` and the error code UNAUTHORIZED in the body, and clients word
# that differently:
UNAUTHORIZED = re.compile(r"unauthorized", re.IGNORECASE)
"""podman, buildah, skopeo, helm 4, oras-py: the body's error code."""
DOCKER_DENIED = re.compile(r"denied: requested access to the resource is denied")
"""docker turns `insufficient_scope` into DENIED with its stock message."""
CONTAINERD_REFUSED = re.compile(r"insufficient_scope: authorization failed")
"""ctr and helm 3 (containerd's resolver) quote the challenge's error."""
HELM_REFUSED = {"helm3": CONTAINERD_REFUSED, "helm4": UNAUTHORIZED}


@dataclass(frozen=True)
class Identity:
    name: str
    password: str
    slug: str
    """For image names: `dev`, `robot`."""

    @property
    def creds(self) -> str:
        """`user:password` as --creds, --dest-creds and --user take it (split at the first `:`)."""
        return f"{self.name}:{self.password}"


@dataclass(frozen=True)
class Registry:
    server: Server
    dev: Identity
    robot: Identity
    viewer: Identity
    public: OciImage
    """The image admin pushed to `pub/images/app:v1`, `priv/open/app:v1`, `priv/closed/app:v1`
    and `team/apps/base:v1`."""
    public_digest: str

    @property
    def host(self) -> str:
        return self.server.host


# --- the server, its accounts and what admin pushed -------------------------------------------


def admin_push(server: Server, image: OciImage, name: str, tag: str) -> str:
    """Push an OCI layout image over the protocol with admin's Basic credentials."""
    session = requests.Session()
    session.auth = server.admin_auth
    for blob in image.blobs:
        response = session.post(
            f"{server.url}/v2/{name}/blobs/uploads/",
            params={"digest": blob.digest},
            data=image.read_blob(blob.digest),
            timeout=60,
        )
        assert response.status_code == 201, response.text
    body = image.read_blob(image.digest)
    response = session.put(
        f"{server.url}/v2/{name}/manifests/{tag}",
        data=body,
        headers={"Content-Type": image.descriptor.media_type},
        timeout=60,
    )
    assert response.status_code == 201, response.text
    digest: str = response.headers["Docker-Content-Digest"]
    assert digest == image.digest
    return digest


def served_digest(server: Server, name: str, reference: str) -> str | None:
    """The digest the server holds for `name:reference` (asked as admin), None when absent."""
    response = requests.head(
        f"{server.url}/v2/{name}/manifests/{reference}",
        headers=ACCEPT_MANIFESTS,
        auth=server.admin_auth,
        timeout=30,
    )
    if response.status_code == 404:
        return None
    assert response.status_code == 200, (response.status_code, response.headers)
    digest: str = response.headers["Docker-Content-Digest"]
    return digest


_CLI_BATCH = """
import contextlib, io, json, sys
from cargohold.cli import main
outputs = []
for argv in json.loads(sys.argv[1]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    if code:
        sys.exit(f"cargohold {' '.join(argv)} exited {code}")
    outputs.append(out.getvalue())
print(json.dumps(outputs))
"""


def cli_batch(server: Server, *commands: list[str], stdin: str = "") -> list[str]:
    """Run cargohold CLI commands in one Python process (each alone costs a second of
    imports); returns what each printed. `--password-stdin` commands read `stdin`'s lines in
    order."""
    argvs = [[*argv, "--data-dir", str(server.data_dir)] for argv in commands]
    done = subprocess.run(
        [sys.executable, "-c", _CLI_BATCH, json.dumps(argvs)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **server.env},
    )
    assert done.returncode == 0, done.stderr
    outputs: list[str] = json.loads(done.stdout)
    return outputs


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    work = tmp_path_factory.mktemp("client-auth")
    server = Server(work / "data")
    # Started first: the server creates `admin` only on a first start with no users at all.
    server.start()
    try:
        outputs = cli_batch(
            server,
            ["project", "create", "team"],
            ["repo", "create", "team", "apps", "--type", "hosted"],
            ["user", "create", "dev", "--password-stdin"],
            ["project", "member-set", "team", "dev", "developer"],
            ["user", "create", "viewer", "--password-stdin"],
            ["project", "member-set", "team", "viewer", "reader"],
            ["robot", "create", "ci", "--grant", "team=pull,push"],
            ["project", "create", "pub", "--anonymous-read"],
            ["repo", "create", "pub", "images", "--type", "hosted"],
            ["project", "create", "priv"],
            ["repo", "create", "priv", "open", "--type", "hosted", "--anonymous-read"],
            ["repo", "create", "priv", "closed", "--type", "hosted"],
            stdin=f"{DEV_PASSWORD}\n{VIEWER_PASSWORD}\n",
        )
        robot_key = outputs[6].strip()
        assert re.fullmatch(r"\S{20,}", robot_key), outputs[6]
        image = oci_image(work / "public-layout", "v1", layers=1, layer_size=LAYER_SIZE)
        digest = ""
        for name in ("pub/images/app", "priv/open/app", "priv/closed/app", "team/apps/base"):
            digest = admin_push(server, image, name, "v1")
        yield Registry(
            server,
            dev=Identity("dev", DEV_PASSWORD, "dev"),
            robot=Identity("sa$ci", robot_key, "robot"),
            viewer=Identity("viewer", VIEWER_PASSWORD, "viewer"),
            public=image,
            public_digest=digest,
        )
    finally:
        server.stop()


@pytest.fixture(params=["dev", "robot"], ids=["dev", "sa$ci"])
def who(request: pytest.FixtureRequest, registry: Registry) -> Identity:
    """The user `dev` (developer of `team`), then the robot `sa$ci` (team=pull,push)."""
    identity: Identity = getattr(registry, request.param)
    return identity


def small_image(layout: Path) -> OciImage:
    """A one-layer image of fresh content."""
    return oci_image(layout, "v1", layers=1, layer_size=LAYER_SIZE)


# --- what the server saw ------------------------------------------------------------------------


def seen(registry: Registry, mark: int) -> list[Access]:
    return accesses(registry.server, after=mark)


def flow(found: list[Access]) -> str:
    """The requests a client made, one a line, for failure messages."""
    return "\n".join(f"{a.method} {a.path} {a.query} -> {a.status}" for a in found)


def assert_token_flow(registry: Registry, mark: int, account: str | None = None) -> None:
    """The client asked the token endpoint and got a token (for `account`, when it says); no
    request met a server error."""
    found = seen(registry, mark)
    tokens = [a for a in found if a.path == "/v2/token" and a.status == 200]
    assert tokens, f"no token was issued:\n{flow(found)}"
    if account is not None:
        accounts = {a.query.get("account") for a in tokens}
        assert account in accounts, f"no token for {account!r}:\n{flow(found)}"
    assert not [a for a in found if a.status >= 500], flow(found)


def assert_no_push(registry: Registry, name: str, mark: int, reference: str = "v1") -> None:
    """Nothing was stored under `name:reference`; no write request to `name` succeeded."""
    assert served_digest(registry.server, name, reference) is None
    found = seen(registry, mark)
    written = [
        a
        for a in found
        if a.path.startswith(f"/v2/{name}/") and a.method in ("PUT", "PATCH") and a.status < 400
    ]
    assert not written, flow(found)


def refused(error: pytest.ExceptionInfo[Exception], pattern: re.Pattern[str]) -> None:
    """The client's error message says why it was refused, in that client's words."""
    message = str(error.value)
    assert pattern.search(message), message


# --- docker -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerDaemon]:
    with DockerDaemon(tmp_path_factory.mktemp("dockerd")) as daemon:
        yield daemon


def docker_cli(docker: DockerDaemon, config_dir: Path) -> DockerDaemon:
    """The module's dockerd, driven by a docker CLI with its own (empty) config directory,
    so that each test starts signed out."""
    write_json(config_dir / "config.json", {"auths": {}})
    cli = copy.copy(docker)
    cli.env = {**docker.env, "DOCKER_CONFIG": str(config_dir)}
    return cli


def docker_auths(config_dir: Path) -> dict[str, dict[str, str]]:
    auths: dict[str, dict[str, str]] = json.loads((config_dir / "config.json").read_text())["auths"]
    return auths


def test_docker_login_push_pull(
    docker: DockerDaemon, registry: Registry, who: Identity, tmp_path: Path
) -> None:
    cli = docker_cli(docker, tmp_path / "docker-config")
    mark = log_mark(registry.server)
    cli.login(registry.host, who.name, who.password)
    assert_token_flow(registry, mark, account=who.name)
    # The token answer carried a refresh token: docker keeps it instead of the password.
    stored = docker_auths(tmp_path / "docker-config")[registry.host]
    assert base64.b64decode(stored["auth"]).decode() == f"{who.name}:"
    assert stored["identitytoken"]

    name = f"team/apps/docker-{who.slug}"
    ref = f"{registry.host}/{name}:v1"
    cli.load(Skopeo(tmp_path / "skopeo"), small_image(tmp_path / "layout").ref, ref)
    mark = log_mark(registry.server)
    pushed = cli.push(ref)
    assert served_digest(registry.server, name, "v1") == pushed
    assert_token_flow(registry, mark)
    found = seen(registry, mark)
    refreshed = [a for a in found if (a.method, a.path, a.status) == ("POST", "/v2/token", 200)]
    assert refreshed, f"docker did not redeem its refresh token:\n{flow(found)}"

    cli("image", "rm", ref)
    assert cli.pull(ref) == pushed
    assert cli.inspect(ref)["RepoDigests"] == [f"{registry.host}/{name}@{pushed}"]


def test_docker_login_with_a_wrong_password_fails(
    docker: DockerDaemon, registry: Registry, tmp_path: Path
) -> None:
    config = tmp_path / "docker-config"
    cli = docker_cli(docker, config)
    mark = log_mark(registry.server)
    with pytest.raises(ClientError) as error:
        cli.login(registry.host, registry.dev.name, "not-the-password")
    refused(error, UNAUTHORIZED)
    assert "Login Succeeded" not in error.value.stdout
    assert registry.host not in docker_auths(config)
    found = seen(registry, mark)
    refusals = [a for a in found if a.path == "/v2/token" and a.status == 401]
    assert [a.query.get("account") for a in refusals] == ["dev"], flow(found)

    done = cli.run(
        "login",
        "-u",
        registry.dev.name,
        "--password-stdin",
        registry.host,
        input=registry.dev.password,
    )
    assert "Login Succeeded" in done.stdout
    assert registry.host in docker_auths(config)


def test_docker_anonymous_pull_and_refused_push(
    docker: DockerDaemon, registry: Registry, tmp_path: Path
) -> None:
    cli = docker_cli(docker, tmp_path / "docker-config")
    ref = f"{registry.host}/pub/images/app:v1"
    assert cli.pull(ref) == registry.public_digest

    name = "pub/images/docker-anonymous"
    cli.tag(ref, f"{registry.host}/{name}:v1")
    mark = log_mark(registry.server)
    with pytest.raises(ClientError) as error:
        cli.push(f"{registry.host}/{name}:v1")
    refused(error, DOCKER_DENIED)
    assert_no_push(registry, name, mark)


def test_docker_reader_pulls_but_may_not_push(
    docker: DockerDaemon, registry: Registry, tmp_path: Path
) -> None:
    cli = docker_cli(docker, tmp_path / "docker-config")
    cli.login(registry.host, registry.viewer.name, registry.viewer.password)
    ref = f"{registry.host}/team/apps/base:v1"
    assert cli.pull(ref) == registry.public_digest

    name = "team/apps/docker-viewer"
    cli.tag(ref, f"{registry.host}/{name}:v1")
    mark = log_mark(registry.server)
    with pytest.raises(ClientError) as error:
        cli.push(f"{registry.host}/{name}:v1")
    refused(error, DOCKER_DENIED)
    assert_no_push(registry, name, mark)


# --- podman and buildah -------------------------------------------------------------------------


def push_with_digestfile(
    tool: Podman | Buildah, image: str, dest: str, digestfile: Path, *, creds: str | None = None
) -> str:
    tool(
        "push",
        "--tls-verify=false",
        *(["--creds", creds] if creds else []),
        "--digestfile",
        digestfile,
        image,
        f"docker://{dest}",
    )
    digest = digestfile.read_text().strip()
    assert DIGEST.fullmatch(digest), digest
    return digest


def test_podman_login_push_pull(registry: Registry, who: Identity, tmp_path: Path) -> None:
    podman = Podman(tmp_path / "containers")
    mark = log_mark(registry.server)
    podman.login(registry.host, who.name, who.password)
    assert (
        registry.host
        in json.loads((tmp_path / "containers" / "containers-auth.json").read_text())["auths"]
    )
    assert_token_flow(registry, mark)

    image_id = podman.pull(small_image(tmp_path / "layout").ref)
    name = f"team/apps/podman-{who.slug}"
    ref = f"{registry.host}/{name}:v1"
    pushed = push_with_digestfile(podman, image_id, ref, tmp_path / "digest")
    assert served_digest(registry.server, name, "v1") == pushed

    podman("rmi", "--all", "--force")
    podman.pull(ref)
    assert podman.image_digest(ref) == pushed


def test_buildah_push_and_pull_with_creds(
    registry: Registry, who: Identity, tmp_path: Path
) -> None:
    buildah = Buildah(tmp_path / "containers")
    image_id = buildah.pull(small_image(tmp_path / "layout").ref)
    name = f"team/apps/buildah-{who.slug}"
    ref = f"{registry.host}/{name}:v1"
    mark = log_mark(registry.server)
    pushed = push_with_digestfile(buildah, image_id, ref, tmp_path / "digest", creds=who.creds)
    assert served_digest(registry.server, name, "v1") == pushed
    assert_token_flow(registry, mark)

    buildah("rmi", "--all", "--force")
    buildah.pull(ref, creds=who.creds)
    assert buildah.image_digest(ref) == pushed


def test_podman_anonymous_pull_and_refused_push(registry: Registry, tmp_path: Path) -> None:
    podman = Podman(tmp_path / "containers")
    ref = f"{registry.host}/pub/images/app:v1"
    image_id = podman.pull(ref)
    assert podman.image_digest(ref) == registry.public_digest

    name = "pub/images/podman-anonymous"
    mark = log_mark(registry.server)
    with pytest.raises(ClientError) as error:
        push_with_digestfile(podman, image_id, f"{registry.host}/{name}:v1", tmp_path / "d")
    refused(error, UNAUTHORIZED)
    assert_no_push(registry, name, mark)


# --- skopeo -------------------------------------------------------------------------------------


def assert_pulled(layout: Path, image: OciImage) -> None:
    """`layout` (written by `skopeo copy ... oci:LAYOUT:v1`) holds `image`, byte for byte."""
    index = json.loads((layout / "index.json").read_text())
    tagged = [
        m["digest"]
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "v1"
    ]
    assert tagged == [image.digest], index
    for digest in [image.digest, *(blob.digest for blob in image.blobs)]:
        blob = layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
        assert blob.read_bytes() == image.read_blob(digest), digest


def test_skopeo_copy_with_creds_then_login(
    registry: Registry, who: Identity, tmp_path: Path
) -> None:
    skopeo = Skopeo(tmp_path / "skopeo")
    image = small_image(tmp_path / "layout")
    name = f"team/apps/skopeo-{who.slug}"
    remote = f"docker://{registry.host}/{name}"
    mark = log_mark(registry.server)
    skopeo.copy(image.ref, f"{remote}:v1", dest_creds=who.creds)
    assert served_digest(registry.server, name, "v1") == image.digest
    assert_token_flow(registry, mark)

    skopeo.copy(f"{remote}:v1", f"oci:{tmp_path / 'back'}:v1", src_creds=who.creds)
    assert_pulled(tmp_path / "back", image)

    # Signed out, the repository is closed; after `skopeo login`, no creds are needed.
    with pytest.raises(ClientError) as error:
        skopeo.inspect(f"{remote}:v1", raw=True)
    refused(error, UNAUTHORIZED)
    skopeo.login(registry.host, who.name, who.password)
    skopeo.copy(image.ref, f"{remote}:v2")
    assert served_digest(registry.server, name, "v2") == image.digest
    assert sorted(skopeo.list_tags(remote)) == ["v1", "v2"]
    assert skopeo.inspect(f"{remote}:v2")["Digest"] == image.digest


@pytest.mark.parametrize(
    "name",
    ["pub/images/app", "priv/open/app"],
    ids=["anonymous-read-project", "anonymous-read-repository-in-private-project"],
)
def test_skopeo_anonymous_pull(registry: Registry, name: str, tmp_path: Path) -> None:
    skopeo = Skopeo(tmp_path / "skopeo")
    skopeo.copy(f"docker://{registry.host}/{name}:v1", f"oci:{tmp_path / 'pulled'}:v1")
    assert_pulled(tmp_path / "pulled", registry.public)


def test_skopeo_anonymous_pull_from_a_private_repository_is_refused(
    registry: Registry, tmp_path: Path
) -> None:
    """`priv/closed` sits beside the anonymous-read `priv/open`, and holds the same image."""
    skopeo = Skopeo(tmp_path / "skopeo")
    with pytest.raises(ClientError) as error:
        skopeo.copy(f"docker://{registry.host}/priv/closed/app:v1", f"oci:{tmp_path / 'pulled'}:v1")
    refused(error, UNAUTHORIZED)
    assert not (tmp_path / "pulled" / "index.json").exists()


def test_skopeo_anonymous_push_is_refused(registry: Registry, tmp_path: Path) -> None:
    skopeo = Skopeo(tmp_path / "skopeo")
    name = "pub/images/skopeo-anonymous"
    mark = log_mark(registry.server)
    with pytest.raises(ClientError) as error:
        skopeo.copy(small_image(tmp_path / "layout").ref, f"docker://{registry.host}/{name}:v1")
    refused(error, UNAUTHORIZED)
    assert_no_push(registry, name, mark)


def test_skopeo_reader_pulls_but_may_not_push(registry: Registry, tmp_path: Path) -> None:
    skopeo = Skopeo(tmp_path / "skopeo")
    viewer = registry.viewer
    skopeo.copy(
        f"docker://{registry.host}/team/apps/base:v1",
        f"oci:{tmp_path / 'pulled'}:v1",
        src_creds=viewer.creds,
    )
    assert_pulled(tmp_path / "pulled", registry.public)

    name = "team/apps/skopeo-viewer"
    mark = log_mark(registry.server)
    with pytest.raises(ClientError) as error:
        skopeo.copy(
            small_image(tmp_path / "layout").ref,
            f"docker://{registry.host}/{name}:v1",
            dest_creds=viewer.creds,
        )
    refused(error, UNAUTHORIZED)
    assert_no_push(registry, name, mark)


# --- containerd ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ctr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    with Containerd(tmp_path_factory.mktemp("containerd")) as daemon:
        yield daemon


def oci_archive(image: OciImage, path: Path) -> Path:
    """The image's OCI layout as a tar, as `ctr images import` takes it."""
    with tarfile.open(path, "w") as tar:
        for entry in sorted(image.layout.rglob("*")):
            tar.add(entry, arcname=str(entry.relative_to(image.layout)), recursive=False)
    return path


def test_ctr_push_pull_with_user(
    ctr: Containerd, registry: Registry, who: Identity, tmp_path: Path
) -> None:
    image = small_image(tmp_path / "layout")
    name = f"team/apps/ctr-{who.slug}"
    ref = f"{registry.host}/{name}:v1"
    archive = oci_archive(image, tmp_path / "image.tar")
    ctr("images", "import", "--base-name", f"{registry.host}/{name}", archive)
    assert ctr.images()[ref] == image.digest

    mark = log_mark(registry.server)
    ctr.push(ref, user=who.creds)
    assert served_digest(registry.server, name, "v1") == image.digest
    uploaded = {
        a.query.get("digest")
        for a in seen(registry, mark)
        if a.method == "PUT" and a.status == 201 and a.path.startswith(f"/v2/{name}/blobs/uploads/")
    }
    assert {blob.digest for blob in image.blobs} <= uploaded, flow(seen(registry, mark))
    assert_token_flow(registry, mark)

    # Drop the image and its content, so that the pull fetches every blob again.
    ctr("images", "rm", "--sync", ref)
    assert ref not in ctr.images()
    mark = log_mark(registry.server)
    ctr.pull(ref, user=who.creds)
    assert ctr.images()[ref] == image.digest
    fetched = {
        a.path.rsplit("/", 1)[-1]
        for a in seen(registry, mark)
        if a.method == "GET" and a.status == 200 and a.path.startswith(f"/v2/{name}/blobs/")
    }
    assert {blob.digest for blob in image.blobs} <= fetched, flow(seen(registry, mark))


def test_ctr_anonymous_pull_and_refused_push(
    ctr: Containerd, registry: Registry, tmp_path: Path
) -> None:
    ref = f"{registry.host}/pub/images/app:v1"
    ctr.pull(ref)
    assert ctr.images()[ref] == registry.public_digest

    name = "pub/images/ctr-anonymous"
    target = f"{registry.host}/{name}:v1"
    ctr("images", "tag", "--force", ref, target)
    mark = log_mark(registry.server)
    with pytest.raises(ClientError) as error:
        ctr.push(target)
    refused(error, CONTAINERD_REFUSED)
    assert_no_push(registry, name, mark)


# --- helm ---------------------------------------------------------------------------------------


HelmName = Literal["helm3", "helm4"]


@pytest.fixture(params=["helm3", "helm4"])
def helm_name(request: pytest.FixtureRequest) -> HelmName:
    name: HelmName = request.param
    return name


def helm_pull(helm: Helm, ref: str, version: str, dest: Path) -> tuple[Path, str]:
    """``helm pull``; the package and the digest helm printed."""
    dest.mkdir(parents=True, exist_ok=True)
    done = helm.run("pull", ref, "--version", version, "--plain-http", "-d", dest)
    found = DIGEST.findall(done.stdout + done.stderr)
    assert found, done.stdout + done.stderr
    package = dest / f"{ref.rsplit('/', 1)[-1]}-{version}.tgz"
    assert package.is_file()
    return package, found[-1]


def test_helm_registry_login_push_pull(
    helm_name: HelmName, registry: Registry, who: Identity, tmp_path: Path
) -> None:
    pusher = Helm(tmp_path / "pusher", helm_name)
    mark = log_mark(registry.server)
    pusher.login(registry.host, who.name, who.password)
    assert_token_flow(registry, mark)

    chart = pusher.package(f"{helm_name}-{who.slug}-{uuid.uuid4().hex[:6]}", "0.1.0")
    mark = log_mark(registry.server)
    pushed = pusher.push(chart, f"oci://{registry.host}/team/apps")
    name = f"team/apps/{chart.name}"
    assert served_digest(registry.server, name, "0.1.0") == pushed
    assert_token_flow(registry, mark)

    puller = Helm(tmp_path / "puller", helm_name)
    with pytest.raises(ClientError) as error:
        helm_pull(puller, f"oci://{registry.host}/{name}", "0.1.0", tmp_path / "signed-out")
    refused(error, HELM_REFUSED[helm_name])
    puller.login(registry.host, who.name, who.password)
    package, pulled = helm_pull(puller, f"oci://{registry.host}/{name}", "0.1.0", tmp_path / "out")
    assert pulled == pushed
    assert package.read_bytes() == chart.package.read_bytes()


def test_helm_anonymous_pull_and_refused_push(
    helm_name: HelmName, registry: Registry, tmp_path: Path
) -> None:
    admin = Helm(tmp_path / "admin", helm_name)
    admin.login(registry.host, *registry.server.admin_auth)
    chart = admin.package(f"{helm_name}-public-{uuid.uuid4().hex[:6]}", "0.1.0")
    pushed = admin.push(chart, f"oci://{registry.host}/pub/images")

    anonymous = Helm(tmp_path / "anonymous", helm_name)
    ref = f"oci://{registry.host}/pub/images/{chart.name}"
    package, pulled = helm_pull(anonymous, ref, "0.1.0", tmp_path / "out")
    assert pulled == pushed
    assert package.read_bytes() == chart.package.read_bytes()

    own = anonymous.package(f"{helm_name}-anonymous-{uuid.uuid4().hex[:6]}", "0.1.0")
    mark = log_mark(registry.server)
    with pytest.raises(ClientError) as error:
        anonymous.push(own, f"oci://{registry.host}/pub/images")
    refused(error, HELM_REFUSED[helm_name])
    assert_no_push(registry, f"pub/images/{own.name}", mark, own.version)


# --- oras (Python SDK) --------------------------------------------------------------------------


def test_oras_login_push_pull(registry: Registry, who: Identity, tmp_path: Path) -> None:
    # oras-py's login only stores the credentials (it asks the server nothing without the
    # docker SDK); the first request that is challenged uses them.
    pusher = Oras(tmp_path / "pusher", registry.host, user=who.name, password=who.password)

    data = os.urandom(LAYER_SIZE)
    source = tmp_path / "src" / "payload.bin"
    source.parent.mkdir()
    source.write_bytes(data)
    name = f"team/apps/oras-{who.slug}"
    target = f"{registry.host}/{name}:v1"
    mark = log_mark(registry.server)
    response = pusher.push(target, [source])
    assert response.status_code == 201, response.text
    pushed = response.headers["Docker-Content-Digest"]
    assert served_digest(registry.server, name, "v1") == pushed
    assert_token_flow(registry, mark)

    puller = Oras(tmp_path / "puller", registry.host, user=who.name, password=who.password)
    files = puller.pull(target, tmp_path / "out")
    assert [f.name for f in files] == ["payload.bin"]
    assert files[0].read_bytes() == data


def test_oras_anonymous_pull_and_refused_push(registry: Registry, tmp_path: Path) -> None:
    anonymous = Oras(tmp_path / "anonymous", registry.host)
    anonymous.pull(f"{registry.host}/pub/images/app:v1", tmp_path / "out")
    # oras-py unpacks a tar+gzip layer into the output folder.
    layer = registry.public.read_blob(registry.public.blobs[0].digest)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
        (member,) = tar.getmembers()
        extracted = tar.extractfile(member)
        assert extracted is not None
        expected = extracted.read()
    assert [p.name for p in (tmp_path / "out").iterdir()] == [member.name]
    assert (tmp_path / "out" / member.name).read_bytes() == expected

    source = tmp_path / "payload.bin"
    source.write_bytes(os.urandom(64))
    name = "pub/images/oras-anonymous"
    mark = log_mark(registry.server)
    with pytest.raises(ValueError) as error:
        anonymous.push(f"{registry.host}/{name}:v1", [source])
    refused(error, UNAUTHORIZED)
    assert_no_push(registry, name, mark)
