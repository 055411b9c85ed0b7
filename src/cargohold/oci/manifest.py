"""Parsing and validation of image manifests and indexes (OCI and Docker schema 2)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn

from cargohold.oci import mediatypes
from cargohold.oci.digest import Digest
from cargohold.oci.errors import ErrorCode, RegistryError

SCHEMA1_MESSAGE: Final = (
    "Docker schema 1 manifests are not supported; push with a current client (schema 2 or OCI)"
)

_MAX_SIZE: Final = 2**63 - 1  # descriptor sizes are int64


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A content descriptor (OCI image spec, descriptor.md).

    Mapping fields are excluded from hashing so that descriptors stay hashable.
    """

    media_type: str
    digest: Digest
    size: int
    artifact_type: str | None = None
    annotations: Mapping[str, str] | None = field(default=None, hash=False)
    urls: tuple[str, ...] = ()
    platform: Mapping[str, Any] | None = field(default=None, hash=False)

    def to_json(self) -> dict[str, Any]:
        """The descriptor as a JSON object with OCI field names; empty optionals are omitted."""
        result: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.artifact_type is not None:
            result["artifactType"] = self.artifact_type
        if self.urls:
            result["urls"] = list(self.urls)
        if self.annotations:
            result["annotations"] = dict(self.annotations)
        if self.platform:
            result["platform"] = dict(self.platform)
        return result


@dataclass(frozen=True, slots=True)
class Manifest:
    """A validated image manifest or image index / manifest list."""

    media_type: str
    config: Descriptor | None
    layers: tuple[Descriptor, ...]
    manifests: tuple[Descriptor, ...]
    subject: Descriptor | None
    artifact_type: str | None
    annotations: Mapping[str, str] | None = field(hash=False)

    @property
    def is_index(self) -> bool:
        return self.media_type in mediatypes.INDEX_TYPES

    @property
    def blob_references(self) -> tuple[Descriptor, ...]:
        """Config and layers that must exist as blobs in the registry.

        Descriptors with ``urls`` (foreign / non-distributable layers) are left out: their
        content is fetched from elsewhere and need not have been pushed.
        """
        candidates = (self.config, *self.layers) if self.config is not None else self.layers
        return tuple(d for d in candidates if not d.urls)

    @property
    def manifest_references(self) -> tuple[Descriptor, ...]:
        """The child manifests of an index (empty for an image manifest)."""
        return self.manifests

    @property
    def referrer_artifact_type(self) -> str | None:
        """The ``artifactType`` to report for this manifest in a referrers list.

        That is ``artifactType`` if set, else the config media type of an image manifest,
        else ``None`` (an index without ``artifactType``).
        """
        if self.artifact_type:
            return self.artifact_type
        if not self.is_index and self.config is not None:
            return self.config.media_type
        return None


def _invalid(message: str) -> NoReturn:
    raise RegistryError(ErrorCode.MANIFEST_INVALID, message)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _load(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        _invalid(f"manifest is not valid UTF-8: {exc.reason} at byte {exc.start}")
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        _invalid(f"manifest is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    except (ValueError, RecursionError) as exc:
        # ValueError: NaN/Infinity or an integer beyond the int conversion limit;
        # RecursionError: pathologically deep nesting.
        _invalid(f"manifest is not valid JSON: {exc}")
    if not isinstance(document, dict):
        _invalid(f"manifest must be a JSON object, not {_kind(document)}")
    return document


def _optional_str(obj: Mapping[str, Any], key: str, path: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        _invalid(f"{path}{key} must be a string, not {_kind(value)}")
    return value


def _annotations(obj: Mapping[str, Any], path: str) -> dict[str, str] | None:
    value = obj.get("annotations")
    if value is None:
        return None
    if not isinstance(value, dict):
        _invalid(f"{path}annotations must be an object, not {_kind(value)}")
    for key, item in value.items():
        if not isinstance(item, str):
            _invalid(f"{path}annotations[{key!r}] must be a string, not {_kind(item)}")
    return dict(value)


def _descriptor(value: object, path: str) -> Descriptor:
    if not isinstance(value, dict):
        _invalid(f"{path} must be a descriptor object, not {_kind(value)}")
    prefix = f"{path}."

    media_type = value.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        _invalid(f"{prefix}mediaType must be a non-empty string")

    raw_digest = value.get("digest")
    if not isinstance(raw_digest, str):
        _invalid(f"{prefix}digest must be a string, not {_kind(raw_digest)}")
    try:
        digest = Digest.parse(raw_digest)
    except RegistryError as exc:
        raise RegistryError(ErrorCode.MANIFEST_INVALID, f"{prefix}digest: {exc.message}") from exc

    size = value.get("size")
    # bool is a subclass of int, but JSON true is not a size.
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= _MAX_SIZE:
        _invalid(f"{prefix}size must be a non-negative 64-bit integer, not {size!r}")

    urls = value.get("urls")
    if urls is None:
        urls = []
    elif not isinstance(urls, list) or not all(isinstance(url, str) for url in urls):
        _invalid(f"{prefix}urls must be an array of strings")

    platform = value.get("platform")
    if platform is not None and not isinstance(platform, dict):
        _invalid(f"{prefix}platform must be an object, not {_kind(platform)}")

    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        artifact_type=_optional_str(value, "artifactType", prefix),
        annotations=_annotations(value, prefix),
        urls=tuple(urls),
        platform=platform,
    )


def _descriptor_list(document: Mapping[str, Any], key: str) -> tuple[Descriptor, ...]:
    value = document.get(key)
    if not isinstance(value, list):
        _invalid(f"{key} must be an array, not {_kind(value)}")
    return tuple(_descriptor(item, f"{key}[{index}]") for index, item in enumerate(value))


def _is_schema1(document: Mapping[str, Any], content_type: str | None) -> bool:
    version = document.get("schemaVersion")
    if type(version) is int and version == 1:
        return True
    return (
        content_type in mediatypes.SCHEMA1_TYPES
        or document.get("mediaType") in mediatypes.SCHEMA1_TYPES
    )


def _resolve_media_type(document: Mapping[str, Any], content_type: str | None) -> str:
    body_type = _optional_str(document, "mediaType", "")
    header_type = content_type if content_type in mediatypes.MANIFEST_TYPES else None
    if body_type is not None:
        if body_type not in mediatypes.MANIFEST_TYPES:
            _invalid(f"unsupported manifest mediaType {body_type!r}")
        if header_type is not None and header_type != body_type:
            _invalid(f"mediaType {body_type} contradicts Content-Type {header_type}")
        return body_type
    if header_type is not None:
        return header_type
    # No declared type (e.g. Helm 3 pushes without mediaType): infer from the shape.
    if "manifests" in document:
        return mediatypes.OCI_INDEX
    if "config" in document:
        return mediatypes.OCI_MANIFEST
    _invalid("cannot determine the manifest type: no mediaType, and neither config nor manifests")


def parse_manifest(body: bytes, content_type: str | None) -> Manifest:
    """Parse and validate a pushed manifest.

    ``content_type`` is the request's Content-Type header (parameters are ignored). The
    manifest type comes from the body's ``mediaType``, else from the Content-Type, else
    from the document's shape. Raises ``MANIFEST_INVALID`` for anything malformed and
    ``UNSUPPORTED`` for Docker schema 1.
    """
    document = _load(body)
    content_type = mediatypes.base_type(content_type)

    if _is_schema1(document, content_type):
        raise RegistryError(ErrorCode.UNSUPPORTED, SCHEMA1_MESSAGE, status=400)

    version = document.get("schemaVersion")
    if type(version) is not int or version != 2:
        _invalid(f"schemaVersion must be the integer 2, not {version!r}")

    media_type = _resolve_media_type(document, content_type)

    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()
    # Mixed shapes are refused so that the same bytes cannot be read as both an image
    # and an index by different consumers (CVE-2021-41190).
    if media_type in mediatypes.INDEX_TYPES:
        for key in ("config", "layers"):
            if key in document:
                _invalid(f"an index ({media_type}) must not have a {key} field")
        if not isinstance(document.get("manifests"), list):
            _invalid(f"an index ({media_type}) requires a manifests array")
        manifests = _descriptor_list(document, "manifests")
    else:
        if "manifests" in document:
            _invalid(f"an image manifest ({media_type}) must not have a manifests field")
        if not isinstance(document.get("config"), dict):
            _invalid(f"an image manifest ({media_type}) requires a config descriptor")
        config = _descriptor(document["config"], "config")
        layers = _descriptor_list(document, "layers")

    subject_value = document.get("subject")
    subject = None if subject_value is None else _descriptor(subject_value, "subject")

    return Manifest(
        media_type=media_type,
        config=config,
        layers=layers,
        manifests=manifests,
        subject=subject,
        artifact_type=_optional_str(document, "artifactType", ""),
        annotations=_annotations(document, ""),
    )


def referrers_index(descriptors: Iterable[Descriptor]) -> bytes:
    """An OCI image index listing ``descriptors``, as returned by the referrers API."""
    document = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_INDEX,
        "manifests": [descriptor.to_json() for descriptor in descriptors],
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
