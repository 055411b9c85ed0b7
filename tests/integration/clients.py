"""Drive the real registry clients from tests: skopeo, podman, buildah, docker, ctr, helm, oras.

Every client runs isolated under a per-test work directory (normally pytest's ``tmp_path``) and
talks to 127.0.0.1 only. A client that is not installed skips the test with a loud reason, or
fails it when ``CI`` is set, so that CI never skips silently. Daemons (dockerd, containerd) are
context managers that start in the background, wait for readiness in a bounded loop and stop
by pid.

Typical use::

    skopeo = Skopeo(tmp_path)
    image = oci_index(tmp_path / "layout", "v1")
    skopeo.copy(image.ref, f"docker://{registry}/team/app:v1", all_images=True, dest_creds="u:p")

    with DockerDaemon(tmp_path / "docker") as docker:
        docker.login(registry, "u", "p")
        docker.load(skopeo, image.ref, f"{registry}/team/app:v2")
        digest = docker.push(f"{registry}/team/app:v2")
"""

from __future__ import annotations

import atexit
import contextlib
import gzip
import hashlib
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NoReturn, Self

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = REPO_ROOT / ".tools" / "bin"
INSTALL_HINT = "run scripts/install-clients"
DEFAULT_TIMEOUT = 300.0
"""Seconds one client command may take before it is killed and the test fails."""

OCI_LAYOUT_VERSION = "1.0.0"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
OCI_TITLE = "org.opencontainers.image.title"

Platform = tuple[str, str]
"""(os, architecture), e.g. ("linux", "amd64")."""

DEFAULT_PLATFORMS: tuple[Platform, ...] = (("linux", "amd64"), ("linux", "arm64"))


# --- finding and running binaries -------------------------------------------------------------


def missing(reason: str) -> NoReturn:
    """Skip the test loudly, or fail it under CI, because a client is not available."""
    message = f"CLIENT MISSING: {reason}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: a missing client fails instead of skipping)")
    pytest.skip(message)


def find_binary(name: str, *, path: str | None = None) -> str:
    """Absolute path of an executable, searched in ``path`` (default: PATH), or ``missing()``."""
    found = shutil.which(name, path=path)
    if found is None:
        missing(f"{name} not installed: {INSTALL_HINT}")
    return found


class ClientError(RuntimeError):
    """A client command failed or timed out; carries its full output."""

    def __init__(self, argv: Sequence[str], returncode: int | None, stdout: str, stderr: str):
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        status = "timed out" if returncode is None else f"exited {returncode}"
        super().__init__(
            f"{' '.join(self.argv)} {status}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
        )


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def run(
    argv: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion with captured output; raise ClientError on failure."""
    args = [str(a) for a in argv]
    try:
        done = subprocess.run(
            args,
            env=None if env is None else {**os.environ, **env},
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ClientError(args, None, _text(exc.stdout), _text(exc.stderr)) from exc
    if done.returncode != 0:
        raise ClientError(args, done.returncode, done.stdout, done.stderr)
    return done


def wait_until(
    check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.2
) -> None:
    """Poll ``check`` until it is true, at most ``timeout`` seconds; raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


_SHORT_DIRS: set[Path] = set()


def _remove_short_dirs() -> None:
    for path in _SHORT_DIRS:
        shutil.rmtree(path, ignore_errors=True)


def short_dir(key: Path, name: str) -> Path:
    """A short directory under /tmp, the same for the same ``key`` and ``name``, removed when
    the Python process exits (or earlier by its owner).

    For paths with a length limit that pytest's tmp_path can exceed: a unix socket path must
    stay under 108 bytes, and podman refuses a ``--runroot`` longer than 50 characters.
    """
    digest = hashlib.sha256(str(key.resolve()).encode()).hexdigest()[:12]
    path = Path("/tmp") / f"ch-{name}-{digest}"
    path.mkdir(mode=0o700, exist_ok=True)
    if not _SHORT_DIRS:
        atexit.register(_remove_short_dirs)
    _SHORT_DIRS.add(path)
    return path


def write_json(path: Path, value: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2))
    return path


class CliClient:
    """One command-line client: its binary, fixed leading arguments and environment."""

    login_args: tuple[str, ...] | None = ("login", "--tls-verify=false")
    """The login subcommand and its flags, None for a client without one."""

    def __init__(
        self, binary: str, *, args: Sequence[str | Path] = (), env: Mapping[str, str] | None = None
    ):
        self.binary = binary
        self.args = [str(a) for a in args]
        self.env = dict(env or {})

    def run(
        self, *args: str | Path, input: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """Run ``binary ARGS... args...``; raise ClientError on failure."""
        return run([self.binary, *self.args, *args], env=self.env, input=input, timeout=timeout)

    def __call__(
        self, *args: str | Path, input: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> str:
        """Like ``run``, returning stdout."""
        return self.run(*args, input=input, timeout=timeout).stdout

    def login(self, registry: str, user: str, password: str) -> None:
        """Store credentials for ``registry`` (``HOST:PORT``) in the client's isolated config."""
        if self.login_args is None:
            raise TypeError(f"{self.binary} has no login: pass credentials to each command")
        self(*self.login_args, "-u", user, "--password-stdin", registry, input=password)


# --- daemons ----------------------------------------------------------------------------------


Proc = tuple[int, int]
"""A process identity that survives pid reuse: (pid, start time in clock ticks since boot)."""


def _live_processes() -> dict[Proc, int]:
    """Every live (non-zombie) process and its parent pid."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ... starttime(22nd)"; comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            found[(int(entry.name), int(fields[19]))] = int(fields[1])
    return found


def descendants(pid: int) -> set[Proc]:
    """Live processes below ``pid`` (children, grandchildren, ...)."""
    live = _live_processes()
    found: set[Proc] = set()
    frontier = {pid}
    while frontier:
        children = {proc for proc, parent in live.items() if parent in frontier}
        found |= children
        frontier = {child_pid for child_pid, _ in children}
    return found


def _stop_processes(procs: set[Proc], timeout: float) -> None:
    """SIGTERM each process by pid, wait up to ``timeout``, SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = procs & _live_processes().keys()
        if not left:
            return
        for pid, _ in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not procs & _live_processes().keys(), timeout=timeout, what="stop")


def unmount_under(directory: Path) -> None:
    """Unmount every mount at or below ``directory``, deepest first. dockerd bind-mounts its
    data root onto itself and only undoes that on a clean shutdown."""
    root = directory.resolve()
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        # The mount point is the 5th field, with space, tab, newline and backslash escaped.
        point = Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[4]))
        if point == root or root in point.parents:
            mounts.append(point)
    for point in sorted(mounts, key=lambda p: len(p.parts), reverse=True):
        run(["umount", point])


class Daemon:
    """A background process in its own session, logging to a file, stopped by pid.

    ``rundir`` is a ``short_dir`` for its sockets, removed on stop.
    """

    def __init__(self, name: str, workdir: Path):
        self.name = name
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / f"{name}.log"
        self.rundir = short_dir(workdir, name)
        self.process: subprocess.Popen[bytes] | None = None
        self.family: set[Proc] = set()
        """Processes the daemon started, as seen when it got ready and when it is stopped."""

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self, argv: Sequence[str | Path], *, env: Mapping[str, str] | None = None) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(a) for a in argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=None if env is None else {**os.environ, **env},
                start_new_session=True,
            )

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, check: Callable[[], bool], *, timeout: float) -> None:
        """Wait until ``check`` passes; fail with the log if the daemon exits or never starts."""

        def ready() -> bool:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise RuntimeError(
                    f"{self.name} exited ({code}) while starting:\n{self.log_tail()}"
                )
            return check()

        try:
            wait_until(ready, timeout=timeout, what=self.name)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.log_tail()}") from exc
        if self.process is not None:
            self.family |= descendants(self.process.pid)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the daemon by pid and wait (SIGKILL if it lingers), then do the same for
        any process it had started that outlived it. Removes ``rundir``."""
        if self.process is not None:
            self.family |= descendants(self.process.pid)
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout)
            _stop_processes(self.family, timeout)
            self.process = None
            self.family = set()
        shutil.rmtree(self.rundir, ignore_errors=True)


class Background:
    """A service a test runs in the background: `with Service(...) as service:` starts it
    and closes it however the block ends, also when starting failed halfway."""

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _DaemonClient(CliClient, Background):
    """A CLI client whose daemon this object starts on ``__enter__`` and stops on ``__exit__``;
    the daemon is ready once its ``socket`` exists and ``CLIENT version`` answers."""

    daemon: Daemon
    socket: Path
    startup_timeout: float
    workdir: Path

    def _daemon_argv(self) -> list[str | Path]:
        raise NotImplementedError

    def _ping(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            self("version", timeout=10)
        except ClientError:
            return False
        return True

    def start(self) -> None:
        self.daemon.start(self._daemon_argv())
        self.daemon.wait_ready(self._ping, timeout=self.startup_timeout)

    def close(self) -> None:
        self.daemon.stop()
        unmount_under(self.workdir)


# --- skopeo -----------------------------------------------------------------------------------


def _creds_args(flag: str, creds: str | None) -> list[str]:
    return [] if creds is None else [flag, creds]


class Skopeo(CliClient):
    """skopeo with TLS verification off and an isolated, empty auth file.

    References carry their transport: ``docker://127.0.0.1:PORT/name:tag``, ``oci:DIR:tag``,
    ``docker-archive:FILE:name:tag``. Credentials are ``"user:password"``.
    """

    def __init__(self, workdir: Path):
        workdir.mkdir(parents=True, exist_ok=True)
        auth = write_json(workdir / "skopeo-auth.json", {"auths": {}})
        (workdir / "skopeo-tmp").mkdir(exist_ok=True)
        super().__init__(
            find_binary("skopeo"),
            env={"REGISTRY_AUTH_FILE": str(auth), "TMPDIR": str(workdir / "skopeo-tmp")},
        )

    def copy(
        self,
        src: str,
        dest: str,
        *,
        all_images: bool = False,
        src_creds: str | None = None,
        dest_creds: str | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        """``skopeo copy [--all]``; ``extra`` adds options such as ``--format=v2s2``."""
        self(
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            *(["--all"] if all_images else []),
            *_creds_args("--src-creds", src_creds),
            *_creds_args("--dest-creds", dest_creds),
            *extra,
            src,
            dest,
        )

    def inspect(self, ref: str, *, raw: bool = False, creds: str | None = None) -> Any:
        """Parsed JSON of ``skopeo inspect``; ``raw`` gives the manifest (or index) itself."""
        out = self(
            "inspect",
            "--tls-verify=false",
            *(["--raw"] if raw else []),
            *_creds_args("--creds", creds),
            ref,
        )
        return json.loads(out)

    def list_tags(self, ref: str, *, creds: str | None = None) -> list[str]:
        """Tags of the repository ``docker://HOST/name``."""
        out = self("list-tags", "--tls-verify=false", *_creds_args("--creds", creds), ref)
        tags: list[str] = json.loads(out)["Tags"]
        return tags

    def delete(self, ref: str, *, creds: str | None = None) -> None:
        """Delete a manifest; a tag reference deletes the manifest it points to."""
        self("delete", "--tls-verify=false", *_creds_args("--creds", creds), ref)


# --- podman and buildah -----------------------------------------------------------------------


class _ContainersTool(CliClient):
    """What podman and buildah share: storage under ``workdir/storage`` (vfs), auth file,
    login, pull, push, tag and manifest lists. Two tools on the same workdir share images."""

    def __init__(self, name: str, workdir: Path, extra_args: Sequence[str | Path] = ()):
        storage = workdir / "storage"
        auth = workdir / "containers-auth.json"
        if not auth.exists():
            write_json(auth, {"auths": {}})
        (storage / "tmp").mkdir(parents=True, exist_ok=True)
        super().__init__(
            find_binary(name),
            args=[
                "--root",
                storage / "root",
                "--runroot",
                short_dir(workdir, "runroot"),
                "--storage-driver",
                "vfs",
                *extra_args,
            ],
            env={"REGISTRY_AUTH_FILE": str(auth), "TMPDIR": str(storage / "tmp")},
        )

    def pull(self, ref: str, *, creds: str | None = None) -> str:
        """Pull ``HOST/name:tag`` (or any transport); returns the image id."""
        out = self("pull", "--tls-verify=false", *_creds_args("--creds", creds), ref)
        return out.strip().splitlines()[-1]

    def push(self, image: str, dest: str | None = None, *, creds: str | None = None) -> None:
        """Push a local image to ``dest`` (``HOST/name:tag``), by default to its own name."""
        self(
            "push",
            "--tls-verify=false",
            *_creds_args("--creds", creds),
            image,
            *([dest] if dest else []),
        )

    def tag(self, image: str, new_name: str) -> None:
        self("tag", image, new_name)

    def image_digest(self, image: str) -> str:
        """Manifest digest of a local image."""
        return self("inspect", "--format", "{{.Digest}}", image).strip()

    def manifest_create(self, name: str) -> None:
        self("manifest", "create", name)

    def manifest_add(self, name: str, image: str, *, creds: str | None = None) -> None:
        """Add an image (``docker://HOST/name:tag``, ``oci:DIR:tag``, or a local one)."""
        self("manifest", "add", "--tls-verify=false", *_creds_args("--creds", creds), name, image)

    def manifest_push(self, name: str, dest: str, *, creds: str | None = None) -> None:
        """Push the list and every image in it (``--all``) to ``dest`` (``docker://...``)."""
        self(
            "manifest",
            "push",
            "--all",
            "--tls-verify=false",
            *_creds_args("--creds", creds),
            name,
            dest,
        )


class Podman(_ContainersTool):
    """podman isolated under ``workdir`` (no containers are run)."""

    def __init__(self, workdir: Path):
        super().__init__(
            "podman",
            workdir,
            ["--tmpdir", workdir / "storage" / "libpod", "--events-backend", "file"],
        )

    def build(self, context: Path, tag: str) -> None:
        """``podman build`` of ``context/Containerfile`` (see ``busybox_context``)."""
        self("build", "--tag", tag, "--file", context / "Containerfile", context)


class Buildah(_ContainersTool):
    """buildah isolated under ``workdir``; shares images with a Podman on the same workdir."""

    def __init__(self, workdir: Path):
        super().__init__("buildah", workdir)

    def image_digest(self, image: str) -> str:
        """Manifest digest of a local image: ``buildah inspect`` has no ``{{.Digest}}``."""
        return self("inspect", "--type", "image", "--format", "{{.FromImageDigest}}", image).strip()

    def scratch_image(self, image: str, files: Mapping[str, Path], *, cmd: str = "") -> str:
        """Commit an image made ``from scratch`` with ``files`` (path in image -> local file);
        returns the image id."""
        container = self("from", "scratch").strip()
        try:
            for dest, src in files.items():
                self("copy", container, src, dest)
            if cmd:
                self("config", "--cmd", cmd, container)
            return self("commit", container, image).strip().splitlines()[-1]
        finally:
            self("rm", container)


def busybox_context(directory: Path) -> Path:
    """A build context: ``FROM scratch`` + the static busybox binary; no network needed."""
    busybox = find_binary("busybox", path="/bin:/usr/bin")
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, directory / "busybox")
    (directory / "Containerfile").write_text(
        'FROM scratch\nCOPY busybox /bin/busybox\nCMD ["/bin/busybox", "true"]\n'
    )
    return directory


# --- docker -----------------------------------------------------------------------------------


class DockerDaemon(_DaemonClient):
    """dockerd (vfs, no bridge, no iptables) with every path under ``workdir`` and a docker CLI
    bound to it. Use as a context manager. 127.0.0.0/8 is an insecure registry by default.

    The CLI is the one beside dockerd from docker.io, not a newer ``docker`` earlier on PATH.
    """

    login_args = ("login",)

    def __init__(self, workdir: Path, *, startup_timeout: float = 60.0):
        self.dockerd = find_binary("dockerd")
        self.daemon = Daemon("dockerd", workdir)
        self.startup_timeout = startup_timeout
        self.workdir = workdir
        self.socket = self.daemon.rundir / "docker.sock"
        config = write_json(workdir / "docker-config" / "config.json", {"auths": {}})
        super().__init__(
            find_binary("docker", path="/usr/bin:/bin"),
            env={
                "DOCKER_HOST": f"unix://{self.socket}",
                "DOCKER_CONFIG": str(config.parent),
            },
        )

    def _daemon_argv(self) -> list[str | Path]:
        exec_root = self.daemon.rundir
        return [
            self.dockerd,
            "--config-file",
            write_json(self.workdir / "daemon.json", {}),
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            "--storage-driver=vfs",
            "--data-root",
            self.workdir / "data",
            "--exec-root",
            exec_root,
            "--pidfile",
            exec_root / "dockerd.pid",
            "-H",
            f"unix://{self.socket}",
        ]

    def load(self, skopeo: Skopeo, src: str, name: str) -> None:
        """Load ``src`` (any skopeo source, e.g. ``oci:DIR:tag``) as image ``name`` (name:tag)."""
        archive = self.workdir / "load.tar"
        skopeo.copy(src, f"docker-archive:{archive}:{name}")
        try:
            self("load", "--input", archive)
        finally:
            archive.unlink(missing_ok=True)

    def push(self, ref: str) -> str:
        """Push ``HOST/name:tag``; returns the manifest digest the push reports."""
        return _digest_in(self("push", ref))

    def pull(self, ref: str) -> str:
        """Pull ``HOST/name:tag`` or ``HOST/name@sha256:...``; returns the digest reported."""
        return _digest_in(self("pull", ref))

    def tag(self, image: str, new_name: str) -> None:
        self("tag", image, new_name)

    def inspect(self, image: str) -> Any:
        """``docker image inspect`` of one image, parsed."""
        return json.loads(self("image", "inspect", image))[0]


_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def _digest_in(output: str) -> str:
    """The last sha256 digest a client printed (push and pull summaries end with it)."""
    found = _DIGEST.findall(output)
    if not found:
        raise AssertionError(f"no digest in client output:\n{output}")
    digest: str = found[-1]
    return digest


# --- containerd -------------------------------------------------------------------------------


class Containerd(_DaemonClient):
    """A standalone containerd (CRI plugin off, native snapshotter, every path under
    ``workdir``) and a ``ctr -a SOCK`` runner. Use as a context manager. ``user`` arguments
    are ``"user:password"``."""

    login_args = None

    def __init__(self, workdir: Path, *, startup_timeout: float = 60.0):
        self.containerd = find_binary("containerd")
        self.daemon = Daemon("containerd", workdir)
        self.startup_timeout = startup_timeout
        self.workdir = workdir
        self.socket = self.daemon.rundir / "containerd.sock"
        super().__init__(
            find_binary("ctr"),
            args=["--address", self.socket],
            env={"CONTAINERD_SNAPSHOTTER": "native"},
        )

    def _daemon_argv(self) -> list[str | Path]:
        run_dir, data = self.daemon.rundir, self.workdir
        disabled = [
            "io.containerd.grpc.v1.cri",
            "io.containerd.snapshotter.v1.aufs",
            "io.containerd.snapshotter.v1.btrfs",
            "io.containerd.snapshotter.v1.devmapper",
            "io.containerd.snapshotter.v1.overlayfs",
            "io.containerd.snapshotter.v1.zfs",
        ]
        config = data / "containerd.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{data / "root"}"\n'
            f'state = "{run_dir / "state"}"\n'
            f"disabled_plugins = {json.dumps(disabled)}\n"
            f'[grpc]\naddress = "{self.socket}"\n'
            f'[ttrpc]\naddress = "{run_dir / "containerd.sock.ttrpc"}"\n'
            '[metrics]\naddress = ""\n'
            f'[plugins."io.containerd.internal.v1.opt"]\npath = "{data / "opt"}"\n'
        )
        return [self.containerd, "--config", config]

    def pull(self, ref: str, *, user: str | None = None, all_platforms: bool = False) -> None:
        """``ctr images pull --plain-http`` of ``HOST/name:tag``; ``all_platforms`` fetches every
        child of an index (needed before pushing the index elsewhere)."""
        self(
            "images",
            "pull",
            "--plain-http",
            *(["--all-platforms"] if all_platforms else []),
            *_creds_args("--user", user),
            ref,
        )

    def push(self, remote: str, local: str | None = None, *, user: str | None = None) -> None:
        """``ctr images push --plain-http REMOTE [LOCAL]``."""
        self(
            "images",
            "push",
            "--plain-http",
            *_creds_args("--user", user),
            remote,
            *([local] if local else []),
        )

    def images(self) -> dict[str, str]:
        """Local image names and their target digests."""
        out = self("images", "list")
        rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
        return {row[0]: row[2] for row in rows}


# --- helm -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chart:
    name: str
    version: str
    package: Path
    """The packaged ``NAME-VERSION.tgz``."""


class Helm(CliClient):
    """helm 3 or 4 from ``.tools/bin`` with config, cache, data and registry config under
    ``workdir``. OCI references are ``oci://HOST/path``; pulls add ``/NAME``."""

    def __init__(self, workdir: Path, name: Literal["helm3", "helm4"] = "helm3"):
        binary = TOOLS_BIN / name
        if not os.access(binary, os.X_OK):
            missing(f"{name} not installed in .tools/bin: {INSTALL_HINT}")
        self.workdir = workdir
        self.major = int(name[-1])
        self.login_args = ("registry", "login", "--insecure" if self.major == 3 else "--plain-http")
        home = workdir / name
        super().__init__(
            str(binary),
            env={
                "HELM_CONFIG_HOME": str(home / "config"),
                "HELM_CACHE_HOME": str(home / "cache"),
                "HELM_DATA_HOME": str(home / "data"),
                "HELM_REGISTRY_CONFIG": str(home / "config" / "registry" / "config.json"),
            },
        )

    def package(self, name: str, version: str, *, app_version: str = "1.0.0") -> Chart:
        """Write a minimal chart (Chart.yaml, values.yaml, one template) and ``helm package`` it."""
        src = self.workdir / "charts" / name / version / name
        (src / "templates").mkdir(parents=True, exist_ok=True)
        (src / "Chart.yaml").write_text(
            f"apiVersion: v2\nname: {name}\nversion: {version}\nappVersion: {app_version!r}\n"
            f"description: {name} {version} for cargohold tests\ntype: application\n"
        )
        (src / "values.yaml").write_text(f"greeting: hello from {name} {version}\n")
        (src / "templates" / "configmap.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"
            "data:\n  greeting: {{ .Values.greeting | quote }}\n"
        )
        self("package", src, "--destination", src.parent)
        package = src.parent / f"{name}-{version}.tgz"
        if not package.is_file():
            raise AssertionError(f"helm package wrote no {package}")
        return Chart(name, version, package)

    def push(self, chart: Chart, oci_url: str) -> str:
        """``helm push CHART.tgz oci://HOST/path --plain-http``; returns the manifest digest."""
        done = self.run("push", chart.package, oci_url, "--plain-http")
        return _digest_in(done.stdout + done.stderr)  # helm prints the summary on stderr

    def pull(self, ref: str, version: str, dest: Path) -> Path:
        """``helm pull oci://HOST/path/NAME --version V --plain-http -d DEST``; returns the tgz."""
        dest.mkdir(parents=True, exist_ok=True)
        self("pull", ref, "--version", version, "--plain-http", "-d", dest)
        name = ref.rstrip("/").rsplit("/", 1)[-1]
        package = dest / f"{name}-{version}.tgz"
        if not package.is_file():
            raise AssertionError(f"helm pull wrote no {package}")
        return package

    def show_chart(self, ref: str, version: str) -> str:
        """Chart.yaml of a pushed chart, as helm prints it."""
        return self("show", "chart", ref, "--version", version, "--plain-http")


# --- oras (Python SDK) ------------------------------------------------------------------------


class Oras:
    """oras-py's ``OrasClient(hostname=..., insecure=True)`` with an isolated auth config.

    oras-py sends every request unauthenticated first. ``auth_backend`` must match the
    registry's challenge: "token" for ``Bearer`` (cargohold), "basic" for ``Basic`` (htpasswd
    without a token server); "token" against a Basic challenge takes the realm for a URL.
    ``push`` is the SDK's own (files as layers, unknown config type); ``push_artifact`` builds
    an OCI 1.1 manifest with ``artifactType`` and the empty config itself, as ``push`` cannot.
    """

    def __init__(
        self,
        workdir: Path,
        registry: str,
        *,
        user: str | None = None,
        password: str | None = None,
        auth_backend: Literal["token", "basic"] = "token",
    ):
        try:
            import oras.client
        except ImportError:
            missing("python package oras not installed: pip install -e '.[test]'")
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.registry = registry
        self.config_path = str(write_json(workdir / "oras-auth.json", {"auths": {}}))
        self.client: Any = oras.client.OrasClient(
            hostname=registry, insecure=True, auth_backend=auth_backend
        )
        if user is not None and password is not None:
            self.client.login(
                username=user,
                password=password,
                hostname=registry,
                tls_verify=False,
                config_path=self.config_path,
            )

    def push(self, target: str, files: Sequence[Path]) -> Any:
        """``client.push`` of ``files`` (each a layer titled by its file name) to ``target``
        (``HOST/name:tag``); returns the requests.Response of the manifest PUT."""
        return self.client.push(
            target=target,
            files=[str(f) for f in files],
            config_path=self.config_path,
            disable_path_validation=True,
            quiet=True,
        )

    def push_artifact(
        self,
        target: str,
        files: Sequence[Path],
        *,
        artifact_type: str,
        layer_media_type: str = "application/octet-stream",
        subject: Descriptor | None = None,
    ) -> Descriptor:
        """Push an OCI 1.1 artifact (``artifactType``, empty config, optional ``subject``);
        returns the manifest descriptor."""
        container = self.client.get_container(target)
        self.client.auth.load_configs(container, configs=[self.config_path])
        empty = self.workdir / "empty.json"
        empty.write_bytes(b"{}")
        config = _file_descriptor(empty, OCI_EMPTY)
        layers = [_file_descriptor(f, layer_media_type, title=f.name) for f in files]
        for path, desc in [(empty, config), *zip(files, layers, strict=True)]:
            response = self.client.upload_blob(str(path), container, desc.to_json())
            self.client._check_200_response(response)
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": config.to_json(),
            "layers": [d.to_json() for d in layers],
        }
        if subject is not None:
            manifest["subject"] = subject.to_json()
        body = _canonical(manifest)
        response = self.client.upload_manifest(manifest, container)
        self.client._check_200_response(response)
        return Descriptor(OCI_MANIFEST, _sha256(body), len(body))

    def pull(self, target: str, outdir: Path) -> list[Path]:
        """``client.pull`` of every layer of ``target`` into ``outdir``; returns the files."""
        outdir.mkdir(parents=True, exist_ok=True)
        files = self.client.pull(target=target, outdir=str(outdir), config_path=self.config_path)
        return [Path(f) for f in files]


# --- OCI image layouts written by hand --------------------------------------------------------


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical(value: Any) -> bytes:
    """JSON bytes as requests' ``json=`` sends them (oras-py) and as written to layouts."""
    return json.dumps(value).encode()


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.platform is not None:
            out["platform"] = {"os": self.platform[0], "architecture": self.platform[1]}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


def _file_descriptor(path: Path, media_type: str, *, title: str | None = None) -> Descriptor:
    data = path.read_bytes()
    return Descriptor(
        media_type, _sha256(data), len(data), annotations={OCI_TITLE: title} if title else {}
    )


@dataclass(frozen=True)
class OciImage:
    """An image or index tagged in an OCI layout directory on disk."""

    layout: Path
    tag: str
    descriptor: Descriptor
    """The top-level manifest or index."""
    manifests: tuple[Descriptor, ...]
    """Every image manifest: the children of an index, or the image's own manifest."""
    blobs: tuple[Descriptor, ...]
    """Every config and layer blob."""

    @property
    def ref(self) -> str:
        """skopeo/podman source reference: ``oci:DIR:tag``."""
        return f"oci:{self.layout}:{self.tag}"

    @property
    def digest(self) -> str:
        return self.descriptor.digest

    def read_blob(self, digest: str) -> bytes:
        return (self.layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


class _Layout:
    """Writes blobs, manifests and tags into an OCI image layout directory."""

    def __init__(self, path: Path, seed: int | None):
        self.path = path
        self.rng = random.Random(seed)
        (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        write_json(path / "oci-layout", {"imageLayoutVersion": OCI_LAYOUT_VERSION})
        self.blobs: list[Descriptor] = []

    def blob(self, data: bytes, media_type: str, platform: Platform | None = None) -> Descriptor:
        digest = _sha256(data)
        (self.path / "blobs" / "sha256" / digest.removeprefix("sha256:")).write_bytes(data)
        return Descriptor(media_type, digest, len(data), platform)

    def json_blob(
        self, value: Any, media_type: str, platform: Platform | None = None
    ) -> Descriptor:
        return self.blob(_canonical(value), media_type, platform)

    def layer(self, size: int) -> tuple[Descriptor, str]:
        """A gzipped tar holding one file of ``size`` random bytes; returns it and its diff id."""
        return self.add_layer(_random_layer(self.rng, size))

    def add_layer(self, data: bytes) -> tuple[Descriptor, str]:
        """A gzipped tar layer as given; returns it and its diff id."""
        desc = self.blob(data, OCI_LAYER)
        self.blobs.append(desc)
        return desc, _sha256(gzip.decompress(data))

    def image(self, platform: Platform, layers: int, layer_size: int) -> Descriptor:
        return self.manifest(platform, [self.layer(layer_size) for _ in range(layers)])

    def manifest(self, platform: Platform, written: Sequence[tuple[Descriptor, str]]) -> Descriptor:
        """An image manifest (and its config) of layers written already, with their diff ids."""
        config = self.json_blob(
            {
                "created": "1970-01-01T00:00:00Z",
                "os": platform[0],
                "architecture": platform[1],
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [diff for _, diff in written]},
            },
            OCI_CONFIG,
        )
        self.blobs.append(config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.to_json(),
            "layers": [desc.to_json() for desc, _ in written],
        }
        return self.json_blob(manifest, OCI_MANIFEST, platform)

    def tag(self, desc: Descriptor, tag: str) -> None:
        """Point ``tag`` at ``desc`` in index.json, replacing an older entry of that tag."""
        index_path = self.path / "index.json"
        index: dict[str, Any] = (
            json.loads(index_path.read_text())
            if index_path.exists()
            else {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        )
        entries = [m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) != tag]
        entry = {**desc.to_json(), "annotations": {REF_NAME: tag}}
        entry.pop("platform", None)
        index["manifests"] = [*entries, entry]
        write_json(index_path, index)


def _random_layer(rng: random.Random, size: int) -> bytes:
    """A gzipped tar holding one file of ``size`` random bytes drawn from ``rng``."""
    name = f"blob-{rng.getrandbits(64):016x}.bin"
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o644, 0
        tar.addfile(info, io.BytesIO(rng.randbytes(size)))
    return gzip.compress(tar_bytes.getvalue(), compresslevel=1, mtime=0)


def random_layer(size: int = 64 * 1024, *, seed: int | None = None) -> bytes:
    """A gzipped tar layer holding one file of ``size`` random bytes, for `oci_image_of`."""
    return _random_layer(random.Random(seed), size)


def oci_image_of(layout: Path, tag: str, layers: Sequence[bytes]) -> OciImage:
    """A linux/amd64 image of exactly ``layers`` (see `random_layer`) in the OCI layout
    ``layout``: images made of the same layer share it."""
    writer = _Layout(layout, None)
    top = writer.manifest(("linux", "amd64"), [writer.add_layer(data) for data in layers])
    writer.tag(top, tag)
    return OciImage(layout, tag, top, (top,), tuple(writer.blobs))


def oci_image(
    layout: Path,
    tag: str = "latest",
    *,
    platforms: Sequence[Platform] = (("linux", "amd64"),),
    index: bool = False,
    layers: int = 2,
    layer_size: int = 64 * 1024,
    seed: int | None = None,
) -> OciImage:
    """Write an image into the OCI layout ``layout`` (created or added to) under ``tag``.

    Each platform gets ``layers`` gzipped-tar layers, each holding one file of exactly
    ``layer_size`` random bytes (fresh content unless ``seed`` is given), and its own config.
    With one platform and ``index=False`` the tag points at the image manifest; otherwise at an
    image index of one manifest per platform.
    """
    if not platforms or (len(platforms) > 1 and not index):
        raise ValueError("several platforms need index=True")
    writer = _Layout(layout, seed)
    manifests = tuple(writer.image(p, layers, layer_size) for p in platforms)
    top = manifests[0]
    if index:
        body = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [m.to_json() for m in manifests],
        }
        top = writer.json_blob(body, OCI_INDEX)
    writer.tag(top, tag)
    return OciImage(layout, tag, top, manifests, tuple(writer.blobs))


def oci_index(
    layout: Path,
    tag: str = "latest",
    *,
    platforms: Sequence[Platform] = DEFAULT_PLATFORMS,
    layers: int = 2,
    layer_size: int = 64 * 1024,
    seed: int | None = None,
) -> OciImage:
    """A multi-arch image: an index of linux/amd64 and linux/arm64 (by default) images."""
    return oci_image(
        layout,
        tag,
        platforms=platforms,
        index=True,
        layers=layers,
        layer_size=layer_size,
        seed=seed,
    )
