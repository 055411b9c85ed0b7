"""What the management API reads and writes: request and response bodies.

The field names are a contract with external clients (CodeScoring.Save for repositories):
keep them as they are. Times are whole seconds since the epoch (UTC).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cargohold.auth.accounts import MIN_PASSWORD_LENGTH, GrantSpec
from cargohold.auth.principals import ROBOT_PREFIX
from cargohold.db.accounts import GrantRecord, MemberRecord, RobotRecord, UserRecord
from cargohold.db.metadata import ProjectRecord, RepositoryRecord, TagRecord
from cargohold.registry.cleanup import CleanupReport
from cargohold.registry.policies import CleanupPolicy

Action = Literal["pull", "push", "delete"]
Role = Literal["reader", "developer", "maintainer", "admin"]
RepositoryType = Literal["hosted", "proxy"]
Format = Literal["docker"]
UntaggedManifests = Literal["keep", "delete"]
UNTAGGED_MANIFESTS_HELP = (
    "what garbage collection does with manifests that no tag, index or referrer needs"
)
MAX_DESCRIPTION_LENGTH = 500


def _seconds(value: float | None) -> int | None:
    return None if value is None else int(value)


class RequestBody(BaseModel):
    """A request body: exactly the documented fields, of exactly their JSON types."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ResponseBody(BaseModel):
    model_config = ConfigDict(frozen=True)


class Error(ResponseBody):
    """Every 4xx and 5xx answer of the management API."""

    message: str


# Projects


Bytes = Annotated[int, Field(ge=0)]


class Project(ResponseBody):
    name: str
    anonymous_read: bool
    created_at: int
    quota_bytes: int | None = Field(
        description="bytes the project's hosted repositories may hold; null: unlimited"
    )
    usage_bytes: int = Field(
        description="bytes its hosted repositories hold, each blob and manifest counted once"
    )

    @classmethod
    def of(cls, record: ProjectRecord, usage_bytes: int) -> Project:
        return cls(
            name=record.name,
            anonymous_read=record.anonymous_read,
            created_at=int(record.created_at),
            quota_bytes=record.quota_bytes,
            usage_bytes=usage_bytes,
        )


class ProjectCreate(RequestBody):
    name: str
    anonymous_read: bool = False
    quota_bytes: Bytes | None = Field(default=None, description="null: unlimited")


class ProjectUpdate(RequestBody):
    anonymous_read: bool | None = None
    quota_bytes: Bytes | None = Field(
        default=None, description="null removes the quota; absent leaves it as it is"
    )


# Repositories


Days = Annotated[float, Field(ge=0)]


class CleanupPolicyBody(RequestBody):
    """Which tags a cleanup run deletes: of the tags that match `match_patterns` (all when
    empty) and none of `keep_patterns` (regular expressions matching whole tags), those for
    which every rule set holds. Deleted tags leave their manifests to garbage collection."""

    keep_last: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="keep the N most recently pushed tags of each image"
    )
    older_than_days: Days | None = Field(
        default=None, description="delete tags pushed more than this many days ago"
    )
    unpulled_days: Days | None = Field(
        default=None,
        description="delete tags not pulled for this many days (never pulled: since pushed)",
    )
    keep_patterns: list[str] = Field(default_factory=list)
    match_patterns: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, policy: CleanupPolicy | None) -> CleanupPolicyBody | None:
        return None if policy is None else cls.model_validate(policy.to_json(), strict=False)

    def policy(self) -> CleanupPolicy:
        return CleanupPolicy(
            self.keep_last,
            self.older_than_days,
            self.unpulled_days,
            tuple(self.keep_patterns),
            tuple(self.match_patterns),
        )


class Repository(ResponseBody):
    project: str
    name: str
    format: str
    repository_type: str
    remote_url: str | None
    cache_ttl: int | None
    # Whether upstream credentials are set; they themselves are never returned.
    has_upstream_credentials: bool
    flat_alias_prefix: str | None
    is_catch_all: bool
    host_name: str | None
    anonymous_read: bool
    untagged_manifests: str
    created_at: int
    cleanup_policy: CleanupPolicyBody | None
    cache_max_age_days: int | None = Field(
        description="a proxy evicts what was not pulled for this many days"
    )
    cache_max_bytes: int | None = Field(
        description="a proxy evicts the least recently pulled while it holds more than this"
    )

    @classmethod
    def of(cls, record: RepositoryRecord) -> Repository:
        return cls(
            project=record.project,
            name=record.name,
            format=record.format,
            repository_type=record.kind,
            remote_url=record.remote_url,
            cache_ttl=record.cache_ttl,
            has_upstream_credentials=record.upstream_username is not None,
            flat_alias_prefix=record.flat_alias_prefix,
            is_catch_all=record.is_catch_all,
            host_name=record.host_name,
            anonymous_read=record.anonymous_read,
            untagged_manifests=record.untagged_manifests,
            created_at=int(record.created_at),
            cleanup_policy=CleanupPolicyBody.of(CleanupPolicy.from_json(record.cleanup_policy)),
            cache_max_age_days=record.cache_max_age_days,
            cache_max_bytes=record.cache_max_bytes,
        )


class RepositoryCreate(RequestBody):
    project: str
    name: str
    format: Format = "docker"
    repository_type: RepositoryType = "hosted"
    remote_url: str | None = Field(
        default=None, description="the upstream registry of a proxy repository"
    )
    cache_ttl: Annotated[int, Field(ge=0)] | None = Field(
        default=None,
        description="seconds a proxy serves a cached tag before checking it upstream",
    )
    upstream_username: str | None = Field(
        default=None, description="the upstream account of a proxy (never returned)"
    )
    upstream_password: str | None = Field(
        default=None, description="the upstream password of a proxy (never returned)"
    )
    flat_alias_prefix: str | None = Field(
        default=None,
        description="a second name prefix of the repository, e.g. common/external/",
    )
    is_catch_all: bool = Field(
        default=False, description="the repository takes the names no prefix matches"
    )
    host_name: str | None = Field(
        default=None, description="a host name whose every name goes to this repository"
    )
    anonymous_read: bool = False
    untagged_manifests: UntaggedManifests = Field(
        default="keep", description=UNTAGGED_MANIFESTS_HELP
    )


class RepositoryUpdate(RequestBody):
    anonymous_read: bool | None = None
    remote_url: str | None = None
    cache_ttl: Annotated[int, Field(ge=0)] | None = None
    upstream_username: str | None = None
    upstream_password: str | None = None
    flat_alias_prefix: str | None = Field(default=None, description="'' removes the alias")
    is_catch_all: bool | None = None
    host_name: str | None = Field(default=None, description="'' removes the host name")
    untagged_manifests: UntaggedManifests | None = Field(
        default=None, description=UNTAGGED_MANIFESTS_HELP
    )
    # null removes these; absent leaves them as they are.
    cleanup_policy: CleanupPolicyBody | None = Field(
        default=None, description="hosted repositories; replaces the policy, null removes it"
    )
    cache_max_age_days: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="proxy repositories; null removes the limit"
    )
    cache_max_bytes: Bytes | None = Field(
        default=None, description="proxy repositories; null removes the limit"
    )

    def lifecycle(self) -> dict[str, Any]:
        """The lifecycle settings the request names (None: remove), for update_repository."""
        named = self.model_fields_set & {"cleanup_policy", "cache_max_age_days", "cache_max_bytes"}
        values = {name: getattr(self, name) for name in named}
        if values.get("cleanup_policy") is not None:
            values["cleanup_policy"] = values["cleanup_policy"].policy()
        return values


class CleanupRun(RequestBody):
    dry_run: bool = Field(default=False, description="report what would go; remove nothing")


class DeletedTag(ResponseBody):
    repository: str
    image: str
    tag: str
    digest: str
    reasons: list[str]


class EvictedManifest(ResponseBody):
    repository: str
    image: str
    digest: str
    size: int
    reasons: list[str]


class CleanupResult(ResponseBody):
    """What a cleanup run deleted (or, dry, would delete), and why."""

    dry_run: bool
    started_at: int
    repositories: list[str] = Field(description="those with a policy or cache limits")
    deleted_tags: list[DeletedTag]
    evicted_manifests: list[EvictedManifest]

    @classmethod
    def of(cls, report: CleanupReport) -> CleanupResult:
        return cls.model_validate({**report.to_json(), "started_at": int(report.started_at)})


class Tag(ResponseBody):
    image: str
    tag: str
    digest: str
    updated_at: int = Field(description="when the tag was pushed or last moved")
    last_pulled_at: int | None = Field(
        description="the last manifest GET by this tag (written every few seconds); null: never"
    )
    pull_count: int

    @classmethod
    def of(cls, record: TagRecord) -> Tag:
        return cls(
            image=record.image,
            tag=record.name,
            digest=record.digest,
            updated_at=int(record.updated_at),
            last_pulled_at=_seconds(record.last_pulled_at),
            pull_count=record.pull_count,
        )


# Project members


class Member(ResponseBody):
    project: str
    user: str
    role: Role

    @classmethod
    def of(cls, record: MemberRecord) -> Member:
        return cls.model_validate(
            {"project": record.project, "user": record.user, "role": record.role}
        )


class MemberRole(RequestBody):
    role: Role


# Users


class User(ResponseBody):
    name: str
    is_admin: bool
    disabled: bool
    created_at: int

    @classmethod
    def of(cls, record: UserRecord) -> User:
        return cls(
            name=record.name,
            is_admin=record.is_admin,
            disabled=record.disabled,
            created_at=int(record.created_at),
        )


class CreatedUser(User):
    password: str | None = Field(
        description="the generated password, shown this once; null when the request set one"
    )

    @classmethod
    def created(cls, record: UserRecord, password: str | None) -> CreatedUser:
        return cls(**User.of(record).model_dump(), password=password)


Password = Annotated[str, Field(min_length=MIN_PASSWORD_LENGTH)]


class UserCreate(RequestBody):
    name: str
    password: Password | None = Field(
        default=None, description="generated (and returned once) when absent"
    )
    is_admin: bool = False


class UserUpdate(RequestBody):
    """Users other than system administrators may change their own password, nothing else."""

    password: Password | None = None
    is_admin: bool | None = None
    disabled: bool | None = None


# Robots


class Grant(RequestBody):
    """Actions a robot may do in a project, or in one repository of it."""

    project: str
    repository: str | None = None
    actions: list[Action] = Field(min_length=1)

    @classmethod
    def of(cls, record: GrantRecord) -> Grant:
        return cls.model_validate(
            {
                "project": record.project,
                "repository": record.repository,
                "actions": list(record.actions),
            },
            strict=False,
        )

    def spec(self) -> GrantSpec:
        return GrantSpec(self.project, self.repository, tuple(self.actions))


class Robot(ResponseBody):
    name: str = Field(description=f"`{ROBOT_PREFIX}<name>`, the name it signs in with")
    description: str
    expires_at: int | None
    disabled: bool
    created_at: int
    last_used_at: int | None
    grants: list[Grant]

    @classmethod
    def of(cls, record: RobotRecord) -> Robot:
        return cls(
            name=ROBOT_PREFIX + record.name,
            description=record.description,
            expires_at=_seconds(record.expires_at),
            disabled=record.disabled,
            created_at=int(record.created_at),
            last_used_at=_seconds(record.last_used_at),
            grants=[Grant.of(grant) for grant in record.grants],
        )


class RobotWithKey(Robot):
    key: str = Field(description="the API key, shown this once")

    @classmethod
    def with_key(cls, record: RobotRecord, key: str) -> RobotWithKey:
        return cls(**Robot.of(record).model_dump(), key=key)


class RobotCreate(RequestBody):
    name: str = Field(description=f"with or without the `{ROBOT_PREFIX}` prefix")
    description: str = Field(default="", max_length=MAX_DESCRIPTION_LENGTH)
    expires_in_seconds: Annotated[int, Field(gt=0)] | None = Field(
        default=None, description="never expires when absent"
    )
    grants: list[Grant] = Field(default_factory=list)

    def grant_specs(self) -> list[GrantSpec]:
        return [grant.spec() for grant in self.grants]


class RobotUpdate(RequestBody):
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION_LENGTH)
    disabled: bool | None = None
    grants: list[Grant] | None = Field(default=None, description="replaces every grant")


# Garbage collection


class GcRequest(RequestBody):
    dry_run: bool = Field(default=False, description="report what would go, delete nothing")


class GcManifest(ResponseBody):
    image: str = Field(description="`project/repository/image`")
    digest: str
    size: int


class GcBlob(ResponseBody):
    digest: str
    size: int


class GcReport(ResponseBody):
    """What a garbage collection removed, or with `dry_run` would remove."""

    dry_run: bool
    grace_seconds: float
    manifests: list[GcManifest]
    links: int = Field(description="links of images to blobs that no manifest of theirs uses")
    blobs: list[GcBlob]
    files: int = Field(description="stored files deleted (blobs and manifest bytes)")
    bytes_freed: int
    seconds: float
