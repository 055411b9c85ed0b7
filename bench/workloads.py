"""The workloads of issue 6, each run the same way against every server.

A workload's ``setup`` runs once (every server), ``prepare`` once per round before any
server runs it (fresh content, so that no round finds the previous round's bytes), and
``run`` once per round and server; only what ``run`` does inside ``probe.timed()`` is
measured: the clock, and the server's CPU and peak RSS. Every value is a rate: higher is
better.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from tests.integration.clients import OciImage, Skopeo, oci_image
from tests.integration.clients import run as run_command

from bench import oci
from bench.gcseed import (
    BLOBS_PER_IMAGE,
    make_images,
    reference_blob,
    reference_config,
    seed_cargohold,
    seed_reference,
)
from bench.httpio import Blob, Connection, write_random_file
from bench.load import LoadResult, hey
from bench.procstat import Meter, Usage
from bench.servers import HOSTED, PROXY, Cargohold, Reference, Side

MiB = 1 << 20


@dataclass(frozen=True)
class Sizes:
    blob: int
    chunk: int
    range_piece: int
    load_seconds: float
    """How long each fixed-concurrency load (manifests, tags) runs."""
    manifest_connections: int
    tags: int
    tags_page: int
    tags_connections: int
    skopeo_layers: int
    skopeo_layer_size: int
    pushers: int
    images_per_pusher: int
    small_layers: int
    small_layer_size: int
    proxy_layers: int
    proxy_layer_size: int
    gc_blobs: int
    """Blobs in the store that garbage collection goes over, 1% of them garbage."""


FULL = Sizes(
    blob=1024 * MiB,
    chunk=8 * MiB,
    range_piece=16 * MiB,
    load_seconds=8,
    manifest_connections=64,
    tags=10_000,
    tags_page=100,
    tags_connections=16,
    skopeo_layers=20,
    skopeo_layer_size=10 * MiB,
    pushers=16,
    images_per_pusher=4,
    small_layers=2,
    small_layer_size=64 * 1024,
    proxy_layers=20,
    proxy_layer_size=10 * MiB,
    gc_blobs=100_000,
)

QUICK = Sizes(
    blob=64 * MiB,
    chunk=8 * MiB,
    range_piece=4 * MiB,
    load_seconds=2,
    manifest_connections=64,
    tags=500,
    tags_page=100,
    tags_connections=16,
    skopeo_layers=4,
    skopeo_layer_size=1 * MiB,
    pushers=16,
    images_per_pusher=1,
    small_layers=2,
    small_layer_size=64 * 1024,
    proxy_layers=2,
    proxy_layer_size=1 * MiB,
    gc_blobs=10_000,
)


class Probe:
    """Times one stretch of a run and charges the server's processes with its CPU and
    memory, and each server it runs on (``services``: PostgreSQL, moto) with its own CPU."""

    def __init__(
        self,
        roots: list[int],
        known: list[int] | None = None,
        services: dict[str, list[int]] | None = None,
    ) -> None:
        self.meter = Meter(roots, known or roots)
        self.service_meters = {name: Meter(pids) for name, pids in (services or {}).items()}
        self.seconds = 0.0
        self.usage = Usage(0.0, 0.0)
        self.service_usage: dict[str, Usage] = {}

    @contextlib.contextmanager
    def timed(self) -> Iterator[None]:
        for meter in self.service_meters.values():
            meter.start()
        self.meter.start()
        start = time.perf_counter()
        yield
        self.seconds = time.perf_counter() - start
        self.usage = self.meter.stop()
        self.service_usage = {name: m.stop() for name, m in self.service_meters.items()}


@dataclass
class Bench:
    """What the workloads share: sizes, folders, the servers, content made once."""

    sizes: Sizes
    workdir: Path
    reference: Reference
    cargoholds: list[Cargohold]
    """One per configuration."""
    rounds: int
    seed: int = 6
    done: set[str] = field(default_factory=set)
    """Keys of shared set-up steps already done."""
    skopeo_images: dict[int, OciImage] = field(default_factory=dict)
    pushed: set[tuple[str, str]] = field(default_factory=set)
    """(side label, image reference) pushed by a timed run."""
    proxy_images: dict[int, OciImage] = field(default_factory=dict)
    """The image behind the proxy, one per round."""
    proxy_warm: set[int] = field(default_factory=set)
    """Rounds whose proxied image Cargohold's proxy has cached."""

    @property
    def sides(self) -> list[Side]:
        return [self.reference, *self.cargoholds]

    def all_server_processes(self) -> list[int]:
        """Every server's, and every server's they run on (PostgreSQL, moto)."""
        pids = {pid for side in self.sides for a in (False, True) for pid in side.roots(a)}
        pids |= {pid for side in self.sides for p in side.services().values() for pid in p}
        return sorted(pids)

    def folder(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def skopeo(self, side: Side) -> Skopeo:
        return Skopeo(self.folder(f"skopeo-{side.label}"))

    def base_file(self) -> Path:
        """``sizes.blob`` random bytes on disk: every big blob is this file with its own
        first 32 bytes."""
        path = self.workdir / "blob.bin"
        if not path.exists():
            write_random_file(path, self.sizes.blob, self.seed)
        return path

    def blob(self, variant: str) -> Blob:
        return Blob.of(self.base_file(), f"cargohold-bench {variant}".encode().ljust(32, b"."))


@dataclass(frozen=True)
class Result:
    value: float
    detail: dict[str, Any]


class Workload:
    key: str = ""
    title: str = ""
    unit: str = ""
    anonymous: bool = False
    """Anonymous requests: the open reference instance is charged, not the token one."""
    alone: bool = False
    """Runs only when named, and with no other workload: it changes what others measure."""

    def setup(self, bench: Bench) -> None:
        """Once, before the first round, for every server."""

    def prepare(self, bench: Bench, round_: int) -> None:
        """Once per round, before any server runs it."""

    def run(self, bench: Bench, side: Side, round_: int, probe: Probe) -> Result:
        raise NotImplementedError


def _mib_per_s(size: int, seconds: float) -> float:
    return size / MiB / seconds


# --- big blobs --------------------------------------------------------------------------------

BLOB_NAME = f"{HOSTED}/blob"


class BlobPush(Workload):
    unit = "MiB/s"

    def __init__(self, chunked: bool) -> None:
        self.chunked = chunked
        self.key = "blob-push-chunked" if chunked else "blob-push-monolithic"
        self.blobs: dict[int, Blob] = {}

    def describe(self, sizes: Sizes) -> None:
        size = f"{sizes.blob // MiB} MiB"
        self.title = (
            f"blob push, {size} in {sizes.chunk // MiB} MiB PATCHes"
            if self.chunked
            else f"blob push, {size} monolithic (POST + PUT)"
        )

    def setup(self, bench: Bench) -> None:
        self.describe(bench.sizes)

    def prepare(self, bench: Bench, round_: int) -> None:
        self.blobs[round_] = bench.blob(f"{self.key} round {round_}")

    def run(self, bench: Bench, side: Side, round_: int, probe: Probe) -> Result:
        blob = self.blobs[round_]
        detail: dict[str, Any] = {"bytes": blob.size, "digest": blob.digest}
        with Connection(side.url, side.bearer(BLOB_NAME)) as connection, probe.timed():
            if self.chunked:
                detail["patches"] = connection.push_chunked(BLOB_NAME, blob, bench.sizes.chunk)
            else:
                connection.push_monolithic(BLOB_NAME, blob)
        return Result(_mib_per_s(blob.size, probe.seconds), detail)


def pull_blob(bench: Bench) -> Blob:
    """The blob the pull workloads read: pushed once to each server and checked by a pull."""
    blob = bench.blob("pulled")
    if "pull-blob" not in bench.done:
        for side in bench.sides:
            with Connection(side.url, side.bearer(BLOB_NAME)) as connection:
                connection.push_monolithic(BLOB_NAME, blob)
                connection.verify(BLOB_NAME, blob)
        bench.done.add("pull-blob")
    return blob


class BlobPull(Workload):
    unit = "MiB/s"

    def __init__(self, ranged: bool) -> None:
        self.ranged = ranged
        self.key = "blob-pull-range" if ranged else "blob-pull"

    def setup(self, bench: Bench) -> None:
        size = f"{bench.sizes.blob // MiB} MiB"
        self.title = (
            f"blob pull, {size} by Range ({bench.sizes.range_piece // MiB} MiB pieces)"
            if self.ranged
            else f"blob pull, {size} whole"
        )
        self.blob = pull_blob(bench)

    def run(self, bench: Bench, side: Side, round_: int, probe: Probe) -> Result:
        blob = self.blob
        with Connection(side.url, side.bearer(BLOB_NAME, "pull")) as connection, probe.timed():
            if self.ranged:
                received = connection.pull_ranges(
                    BLOB_NAME, blob.digest, blob.size, bench.sizes.range_piece
                )
            else:
                received = connection.pull(BLOB_NAME, blob.digest)
        if received != blob.size:
            raise RuntimeError(f"pulled {received} bytes of {blob.size}")
        return Result(_mib_per_s(received, probe.seconds), {"bytes": received})


# --- manifests and tags at fixed concurrency --------------------------------------------------

MANIFEST_NAME = f"{HOSTED}/manifest"
TAGS_NAME = f"{HOSTED}/tags"


def small_manifest(bench: Bench) -> oci.SmallImage:
    """A small image as ``MANIFEST_NAME:latest`` in every server."""
    image = oci.SmallImage.make(random.Random(bench.seed), 2, 4096)
    if "manifest" not in bench.done:
        for side in bench.sides:
            job = (MANIFEST_NAME, "latest", image, side.bearer(MANIFEST_NAME))
            asyncio.run(oci.push_images(side.url, [job], 1))
        bench.done.add("manifest")
    return image


def _load_result(result: LoadResult, expect: int = 200) -> Result:
    others = {status: n for status, n in result.statuses.items() if status != expect}
    total = sum(result.statuses.values())
    if others or result.errors:
        # hey cancels what is in flight when its time is up: at most one request per
        # connection may end so. Anything else is a failure of the workload.
        cancelled = sum(n for e, n in result.errors.items() if "deadline" in e or "cancel" in e)
        if others or sum(result.errors.values()) > cancelled:
            raise RuntimeError(f"statuses {result.statuses}, errors {result.errors}")
    detail = {
        "requests": total,
        "mean_latency_ms": round(result.mean_latency_ms, 3),
        "p99_latency_ms": result.p99_latency_ms,
        "errors": result.errors,
    }
    return Result(result.requests_per_second, detail)


class ManifestLoad(Workload):
    unit = "req/s"

    def __init__(self, method: str, anonymous: bool) -> None:
        self.method = method
        self.anonymous = anonymous
        auth = "anonymous" if anonymous else "bearer"
        self.key = f"manifest-{method.lower()}-{auth}"
        self.auth = auth

    def setup(self, bench: Bench) -> None:
        self.title = (
            f"manifest {self.method} by tag, {bench.sizes.manifest_connections} connections,"
            f" {self.auth}"
        )
        self.image = small_manifest(bench)

    def run(self, bench: Bench, side: Side, round_: int, probe: Probe) -> Result:
        headers = {"Accept": oci.OCI_MANIFEST}
        if not self.anonymous:
            headers.update(side.bearer(MANIFEST_NAME, "pull"))
        base = side.anonymous_url if self.anonymous else side.url
        with probe.timed():
            result = hey(
                f"{base}/v2/{MANIFEST_NAME}/manifests/latest",
                method=self.method,
                seconds=bench.sizes.load_seconds,
                concurrency=bench.sizes.manifest_connections,
                headers=headers,
            )
        return _load_result(result)


def tag_name(index: int) -> str:
    return f"t-{index:05d}"


class TagsList(Workload):
    unit = "req/s"

    def __init__(self, page: str) -> None:
        if page not in ("first", "middle", "all"):
            raise ValueError(page)
        self.page = page
        self.key = f"tags-list-{page}"

    def setup(self, bench: Bench) -> None:
        sizes = bench.sizes
        where = {
            "first": f"first page (n={sizes.tags_page})",
            "middle": f"a middle page (n={sizes.tags_page}&last=)",
            "all": "all in one answer (no n)",
        }[self.page]
        self.title = (
            f"tags/list of {sizes.tags} tags, {where}, {sizes.tags_connections} connections"
        )
        if "tags" in bench.done:
            return
        image = small_manifest(bench)
        tags = [tag_name(i) for i in range(sizes.tags)]
        for side in bench.sides:
            started = time.monotonic()
            first = (TAGS_NAME, tags[0], image, side.bearer(TAGS_NAME))
            asyncio.run(oci.push_images(side.url, [first], 1))
            for start in range(0, len(tags), 1000):  # a fresh token for each thousand
                asyncio.run(
                    oci.put_tags(
                        side.url,
                        TAGS_NAME,
                        image.manifest,
                        tags[start : start + 1000],
                        side.bearer(TAGS_NAME),
                        16,
                    )
                )
            print(
                f"  {side.label}: {sizes.tags} tags in {time.monotonic() - started:.1f} s",
                flush=True,
            )
        bench.done.add("tags")

    def _query(self, bench: Bench) -> str:
        if self.page == "all":
            return ""
        query = f"?n={bench.sizes.tags_page}"
        if self.page == "middle":
            query += f"&last={tag_name(bench.sizes.tags // 2 - 1)}"
        return query

    def run(self, bench: Bench, side: Side, round_: int, probe: Probe) -> Result:
        headers = side.bearer(TAGS_NAME, "pull")
        url = f"{side.url}/v2/{TAGS_NAME}/tags/list{self._query(bench)}"
        page = requests.get(url, headers=headers, timeout=60)
        page.raise_for_status()
        tags = page.json()["tags"]
        with probe.timed():
            result = hey(
                url,
                seconds=bench.sizes.load_seconds,
                concurrency=bench.sizes.tags_connections,
                headers=headers,
            )
        outcome = _load_result(result)
        outcome.detail.update(
            tags_per_answer=len(tags),
            first_tag=tags[0] if tags else None,
            link="Link" in page.headers,
        )
        return outcome


# --- skopeo -----------------------------------------------------------------------------------


def _image_bytes(image: OciImage) -> int:
    return sum(d.size for d in image.blobs) + sum(d.size for d in image.manifests)


def _skopeo_name(round_: int) -> str:
    return f"{HOSTED}/skopeo-r{round_}:v1"


class SkopeoPush(Workload):
    key = "skopeo-push"
    unit = "MiB/s"

    def setup(self, bench: Bench) -> None:
        s = bench.sizes
        self.title = f"skopeo push, {s.skopeo_layers} layers x {s.skopeo_layer_size // MiB} MiB"

    def prepare(self, bench: Bench, round_: int) -> None:
        skopeo_image(bench, round_)

    def run(self, bench: Bench, side: Side, round_: int, probe: Probe) -> Result:
        image = skopeo_image(bench, round_)
        dest = f"docker://{side.host(side.url)}/{_skopeo_name(round_)}"
        skopeo = bench.skopeo(side)
        with probe.timed():
            skopeo.copy(image.ref, dest, dest_creds=side.skopeo_creds)
        bench.pushed.add((side.label, dest))
        size = _image_bytes(image)
        return Result(_mib_per_s(size, probe.seconds), {"bytes": size})


def skopeo_image(bench: Bench, round_: int) -> OciImage:
    if round_ not in bench.skopeo_images:
        s = bench.sizes
        layout = bench.folder("images") / f"skopeo-r{round_}"
        bench.skopeo_images[round_] = oci_image(
            layout, "v1", layers=s.skopeo_layers, layer_size=s.skopeo_layer_size
        )
    return bench.skopeo_images[round_]


def _pull(bench: Bench, side: Side, source: str, creds: str | None, probe: Probe) -> None:
    target = bench.folder("pulled") / side.label
    shutil.rmtree(target, ignore_errors=True)
    skopeo = bench.skopeo(side)
    try:
        with probe.timed():
            skopeo.copy(source, f"dir:{target}", src_creds=creds)
    finally:
        shutil.rmtree(target, ignore_errors=True)


class SkopeoPull(Workload):
    key = "skopeo-pull"
    unit = "MiB/s"

    def setup(self, bench: Bench) -> None:
        s = bench.sizes
        self.title = f"skopeo pull, {s.skopeo_layers} layers x {s.skopeo_layer_size // MiB} MiB"

    def run(self, bench: Bench, side: Side, round_: int, probe: Probe) -> Result:
        image = skopeo_image(bench, round_)
        source = f"docker://{side.host(side.url)}/{_skopeo_name(round_)}"
        if (side.label, source) not in bench.pushed:  # the push workload did not run
            bench.skopeo(side).copy(image.ref, source, dest_creds=side.skopeo_creds)
            bench.pushed.add((side.label, source))
        _pull(bench, side, source, side.skopeo_creds, probe)
        size = _image_bytes(image)
        return Result(_mib_per_s(size, probe.seconds), {"bytes": size})


# --- many small pushes at once ------------------------------------------------------------------


class ConcurrentPushes(Workload):
    key = "concurrent-pushes"
    unit = "images/s"

    def setup(self, bench: Bench) -> None:
        s = bench.sizes
        self.title = (
            f"{s.pushers} concurrent pushes of distinct small images"
            f" ({s.small_layers} x {s.small_layer_size // 1024} KiB layers,"
            f" {s.images_per_pusher} each)"
        )
        self.images: dict[int, list[oci.SmallImage]] = {}

    def prepare(self, bench: Bench, round_: int) -> None:
        s = bench.sizes
        rng = random.Random(f"{bench.seed}-pushes-{round_}")
        count = s.pushers * s.images_per_pusher
        self.images[round_] = [
            oci.SmallImage.make(rng, s.small_layers, s.small_layer_size) for _ in range(count)
        ]

    def run(self, bench: Bench, side: Side, round_: int, probe: Probe) -> Result:
        s = bench.sizes
        names = [f"{HOSTED}/small-{i:02d}" for i in range(s.pushers)]
        headers = {name: side.bearer(name) for name in names}
        jobs = [
            (
                names[i % s.pushers],
                f"r{round_}-{i // s.pushers}",
                image,
                headers[names[i % s.pushers]],
            )
            for i, image in enumerate(self.images[round_])
        ]
        with probe.timed():
            asyncio.run(oci.push_images(side.url, jobs, s.pushers))
        return Result(len(jobs) / probe.seconds, {"images": len(jobs)})


# --- the proxy --------------------------------------------------------------------------------

PROXIED = "proxied/app"


class ProxyPull(Workload):
    """Cargohold: a skopeo pull through the proxy repository (cold: the first pull of this
    round's image; warm: the second) or from a hosted repository holding the same image.
    Reference: the same pull straight from the reference registry, the proxy's upstream."""

    unit = "MiB/s"
    anonymous = True

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.key = f"proxy-pull-{kind}" if kind != "hosted" else "hosted-pull-proxied-image"

    def setup(self, bench: Bench) -> None:
        s = bench.sizes
        what = f"{s.proxy_layers} layers x {s.proxy_layer_size // MiB} MiB"
        self.title = {
            "cold": f"proxy pull (skopeo), cold, {what}",
            "warm": f"proxy pull (skopeo), warm, {what}",
            "hosted": f"hosted pull (skopeo) of the proxied image, {what}",
        }[self.kind]
        if "proxy" in bench.done:
            return
        # One image per round, so that each round's cold pull is cold: in the reference
        # (the proxy's upstream) and, for the hosted comparison, in Cargohold's hosted repo.
        layout = bench.folder("images") / "proxied"
        for round_ in range(bench.rounds):
            image = oci_image(
                layout, f"r{round_}", layers=s.proxy_layers, layer_size=s.proxy_layer_size
            )
            bench.reference.open.seed(image, PROXIED)
            for cargohold in bench.cargoholds:
                dest = f"docker://{cargohold.host(cargohold.url)}/{HOSTED}/{PROXIED}"
                bench.skopeo(cargohold).copy(
                    image.ref, f"{dest}:r{round_}", dest_creds=cargohold.skopeo_creds
                )
            bench.proxy_images[round_] = image
        bench.done.add("proxy")

    def _source(self, side: Side, round_: int) -> str:
        if isinstance(side, Reference):
            return f"docker://{side.host(side.anonymous_url)}/{PROXIED}:r{round_}"
        repository = HOSTED if self.kind == "hosted" else PROXY
        return f"docker://{side.host(side.anonymous_url)}/{repository}/{PROXIED}:r{round_}"

    def run(self, bench: Bench, side: Side, round_: int, probe: Probe) -> Result:
        image = bench.proxy_images[round_]
        source = self._source(side, round_)
        proxied = self.kind != "hosted" and isinstance(side, Cargohold)
        if self.kind == "warm" and proxied and round_ not in bench.proxy_warm:
            _pull(bench, side, source, None, Probe([]))  # the cold workload did not run
        _pull(bench, side, source, None, probe)
        if proxied:
            bench.proxy_warm.add(round_)
        size = _image_bytes(image)
        return Result(_mib_per_s(size, probe.seconds), {"bytes": size, "source": source})


# --- garbage collection -------------------------------------------------------------------------


class GarbageCollection(Workload):
    """Cargohold: `POST /api/v1/gc` on the running server (online, charged to the server's
    processes). Reference: `registry garbage-collect` over a storage folder of its own that
    holds the same images (distribution collects offline only: with no server pushing); it
    is not a server process, so its CPU is in the run's details, not the CPU column.

    The store is seeded once (`bench/gcseed.py`) with `store_factor` times `gc_blobs`
    blobs; each round adds the garbage, images whose manifest is gone, 1% of `gc_blobs`
    whatever the factor: a larger store with the same garbage shows what the store's size
    costs a collection. A factor above 1 runs alone (the larger store would be `gc`'s)."""

    unit = "blobs/s"

    def __init__(self, store_factor: int = 1) -> None:
        self.store_factor = store_factor
        self.key = "gc" if store_factor == 1 else f"gc-{store_factor}x"
        self.alone = store_factor > 1

    def setup(self, bench: Bench) -> None:
        s = bench.sizes
        image_count = s.gc_blobs // BLOBS_PER_IMAGE
        self.garbage_images = max(1, image_count // 100)
        self.store_blobs = self.store_factor * s.gc_blobs
        self.title = f"garbage collection, {self.store_blobs:,} blobs with" + (
            " 1% garbage"
            if self.store_factor == 1
            else f" {self.garbage_images * BLOBS_PER_IMAGE:,} garbage (as `gc`)"
        )
        self.storage = bench.folder("reference-gc")
        self.config = reference_config(self.storage, bench.workdir / "reference-gc.yml")
        # Each part of the store once, shared by the workloads of every factor.
        for part in range(self.store_factor):
            label = f"kept{part}"
            if f"gc-{label}" not in bench.done:
                count = image_count - self.garbage_images if part == 0 else image_count
                self._seed(bench, make_images(label, count, garbage=False))
                bench.done.add(f"gc-{label}")

    def _seed(self, bench: Bench, images: list[Any]) -> None:
        project, repository = HOSTED.split("/")
        for cargohold in bench.cargoholds:
            seed_cargohold(cargohold.server, project, repository, images)
        seed_reference(self.storage, HOSTED, images)

    def prepare(self, bench: Bench, round_: int) -> None:
        self.garbage = make_images(f"{self.key}-r{round_}", self.garbage_images, garbage=True)
        self._seed(bench, self.garbage)

    def run(self, bench: Bench, side: Side, round_: int, probe: Probe) -> Result:
        garbage = self.garbage_images * BLOBS_PER_IMAGE
        if isinstance(side, Cargohold):
            with probe.timed():
                response = requests.post(
                    f"{side.url}/api/v1/gc",
                    json={"dry_run": False},
                    auth=side.server.admin_auth,
                    timeout=3600,
                )
            response.raise_for_status()
            report = response.json()
            if len(report["blobs"]) < garbage:
                raise RuntimeError(f"collected {len(report['blobs'])} blobs of {garbage}")
            detail = {
                "blobs_removed": len(report["blobs"]),
                "links_removed": report["links"],
                "bytes_freed": report["bytes_freed"],
            }
        else:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            with probe.timed():
                run_command(["docker-registry", "garbage-collect", self.config], timeout=3600)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            if any(reference_blob(self.storage, data).exists() for data in self.garbage[0].blobs):
                raise RuntimeError("registry garbage-collect left garbage")
            detail = {"collector_cpu_seconds": round(cpu, 3)}
        return Result(self.store_blobs / probe.seconds, detail)


def all_workloads() -> list[Workload]:
    return [
        BlobPush(chunked=False),
        BlobPush(chunked=True),
        BlobPull(ranged=False),
        BlobPull(ranged=True),
        ManifestLoad("HEAD", anonymous=True),
        ManifestLoad("GET", anonymous=True),
        ManifestLoad("HEAD", anonymous=False),
        ManifestLoad("GET", anonymous=False),
        TagsList("first"),
        TagsList("middle"),
        TagsList("all"),
        SkopeoPush(),
        SkopeoPull(),
        ConcurrentPushes(),
        ProxyPull("cold"),
        ProxyPull("warm"),
        ProxyPull("hosted"),
        GarbageCollection(),
        GarbageCollection(store_factor=2),
    ]
