"""The command line: serve, and the administration of projects, repositories, users and
robot accounts. Administration commands call the same services as the management API, on
the database of `--data-dir` (a running server sees their changes within seconds).

Secrets (generated passwords, robot keys) are the only thing printed on stdout, so that
`KEY=$(cargohold robot create ci --grant common=pull)` works; messages go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import datetime
import json
import logging
import multiprocessing
import multiprocessing.connection
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from cargohold.app import create_app
from cargohold.auth.accounts import GrantSpec
from cargohold.auth.principals import ROBOT_PREFIX, ROLES
from cargohold.config import Settings, load_settings
from cargohold.db.accounts import RobotRecord
from cargohold.db.engine import migrate, schema_revisions
from cargohold.registry.errors import InvalidInput, ManagementError
from cargohold.registry.gc import GcReport
from cargohold.registry.integrity import FsckReport, human_size
from cargohold.registry.policies import CleanupPolicy
from cargohold.registry.projects import (
    UNCHANGED,
    UNTAGGED_MANIFEST_POLICIES,
    FlatRouting,
    ProxySettings,
    Unchanged,
)
from cargohold.registry.quotas import parse_size
from cargohold.registry.services import Services, build_services
from cargohold.registry.transfer import copy_installation, prepare

PR_SET_PDEATHSIG = 1  # prctl(2)
# An administration command; what it returns (if anything) is the exit status.
Action = Callable[[Services, argparse.Namespace], Awaitable[int | None]]


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    settings = load_settings(args.config, {"data_dir": args.data_dir, **overrides})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.migrate_at_start:
        migrate(settings.metadata_url)
        return settings
    current, newest = schema_revisions(settings.metadata_url)
    if current != newest:
        raise InvalidInput(
            f"the metadata database's schema is at revision {current or 'none'}, this version"
            f" needs {newest}: run `cargohold migrate` (migrate_at_start is off)"
        )
    return settings


def migrate_schema(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, {"data_dir": args.data_dir})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.metadata_url)
    _say("the metadata database's schema is at the newest revision")
    return 0


def copy(args: argparse.Namespace) -> int:
    if args.from_config is None and args.from_data_dir is None:
        raise InvalidInput(
            "say what to copy: --from-config OLD.toml and/or --from-data-dir OLD_DIR"
        )
    # The source's settings are its own: CARGOHOLD_* variables are the target's.
    source = load_settings(args.from_config, {"data_dir": args.from_data_dir}, environ={})
    target = load_settings(args.config, {"data_dir": args.data_dir})
    target.data_dir.mkdir(parents=True, exist_ok=True)
    prepare(source, target)
    report = asyncio.run(copy_installation(source, target, progress=_say))
    for line in report.lines():
        _say(line)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    return report.exit_code


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _read_password(args: argparse.Namespace) -> str | None:
    if not getattr(args, "password_stdin", False):
        return None
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise InvalidInput("no password on standard input")
    return password


def _time(moment: float | None) -> str:
    if moment is None:
        return "-"
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _serve_in_this_process(settings: Settings, *, announce: bool) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(process)d %(levelname)s %(name)s %(message)s",
    )
    if settings.workers > 1:
        # A worker ends with its parent, even one killed outright.
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        reuse_port=settings.workers > 1,
        print=(
            lambda _: print(
                f"cargohold serving on http://{settings.host}:{settings.port} with"
                f" {settings.workers} worker(s) (data in {settings.data_dir.resolve()})",
                flush=True,
            )
        )
        if announce
        else None,
    )


def serve(args: argparse.Namespace) -> int:
    settings = _settings(args, host=args.host, port=args.port, workers=args.workers)
    if settings.workers == 1:
        _serve_in_this_process(settings, announce=True)
        return 0
    # Several processes share the port (SO_REUSEPORT: the kernel spreads connections) and
    # everything else through the database and the data folder.
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(
            target=_serve_in_this_process, args=(settings,), kwargs={"announce": index == 0}
        )
        for index in range(settings.workers)
    ]
    for worker in workers:
        worker.start()

    def stop(signum: int, _frame: object) -> None:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # When one worker ends, stop the others: a supervisor restarts the whole server.
    multiprocessing.connection.wait([worker.sentinel for worker in workers])
    stop(signal.SIGTERM, None)
    for worker in workers:
        worker.join()
    return max(abs(worker.exitcode or 0) for worker in workers)


# Projects and repositories


def _quota(text: str | None) -> int | Unchanged | None:
    """--quota-bytes: a size, `none` for unlimited, absent for unchanged."""
    if text is None:
        return UNCHANGED
    return None if text.lower() == "none" else parse_size(text)


def _describe_quota(quota_bytes: int | None) -> str:
    return "unlimited" if quota_bytes is None else human_size(quota_bytes)


async def project_create(services: Services, args: argparse.Namespace) -> None:
    quota_bytes = _quota(args.quota_bytes)
    project = await services.projects.create_project(
        args.name, args.anonymous_read, None if quota_bytes is UNCHANGED else quota_bytes
    )
    _say(f"created project {project.name} (quota {_describe_quota(project.quota_bytes)})")


async def project_update(services: Services, args: argparse.Namespace) -> None:
    quota_bytes = _quota(args.quota_bytes)
    if args.anonymous_read is None and quota_bytes is UNCHANGED:
        raise InvalidInput("nothing to change: give --[no-]anonymous-read or --quota-bytes")
    project = await services.projects.update_project(
        args.name, anonymous_read=args.anonymous_read, quota_bytes=quota_bytes
    )
    _say(
        f"project {project.name}: anonymous read {'on' if project.anonymous_read else 'off'},"
        f" quota {_describe_quota(project.quota_bytes)}"
    )


async def project_list(services: Services, args: argparse.Namespace) -> None:
    projects = await services.projects.list_projects()
    usage = await services.projects.usage(projects)
    for project in projects:
        print(
            f"{project.name}\tanonymous_read={str(project.anonymous_read).lower()}"
            f"\tquota_bytes={'none' if project.quota_bytes is None else project.quota_bytes}"
            f"\tusage_bytes={usage[project.id]}"
        )


async def member_set(services: Services, args: argparse.Namespace) -> None:
    member = await services.accounts_admin.set_member(args.project, args.user, args.role)
    _say(f"{member.user} is {member.role} of {member.project}")


async def member_remove(services: Services, args: argparse.Namespace) -> None:
    await services.accounts_admin.remove_member(args.project, args.user)
    _say(f"{args.user} is no longer a member of {args.project}")


async def member_list(services: Services, args: argparse.Namespace) -> None:
    for member in await services.accounts_admin.members(args.project):
        print(f"{member.user}\t{member.role}")


async def repo_create(services: Services, args: argparse.Namespace) -> None:
    repository = await services.projects.create_repository(
        args.project,
        args.name,
        args.type,
        args.format,
        args.anonymous_read,
        proxy=ProxySettings.of(
            args.remote_url, args.cache_ttl, args.upstream_username, args.upstream_password
        ),
        routing=FlatRouting(args.flat_alias_prefix, args.catch_all, args.host_name),
        untagged_manifests=args.untagged_manifests,
    )
    _say(f"created {repository.kind} repository {repository.project}/{repository.name}")


def _cleanup_policy(args: argparse.Namespace) -> CleanupPolicy | Unchanged | None:
    """The policy the --cleanup-* options give (replacing the old one), None for
    --no-cleanup, UNCHANGED when none is given."""
    rules = (args.cleanup_keep_last, args.cleanup_older_than_days, args.cleanup_unpulled_days)
    patterns = (args.cleanup_keep, args.cleanup_match)
    if args.no_cleanup:
        if any(value is not None for value in (*rules, *patterns)):
            raise InvalidInput("--no-cleanup removes the policy: give no --cleanup-* with it")
        return None
    if all(value is None for value in (*rules, *patterns)):
        return UNCHANGED
    return CleanupPolicy(*rules, tuple(args.cleanup_keep or ()), tuple(args.cleanup_match or ()))


def _cache_limit(text: str | None, parse: Callable[[str], int]) -> int | Unchanged | None:
    if text is None:
        return UNCHANGED
    return None if text.lower() == "none" else parse(text)


def _days(text: str) -> int:
    if not text.isdigit():
        raise InvalidInput(f"{text!r} is not a whole number of days")
    return int(text)


async def repo_update(services: Services, args: argparse.Namespace) -> None:
    repository = await services.projects.update_repository(
        args.project,
        args.name,
        anonymous_read=args.anonymous_read,
        remote_url=args.remote_url,
        cache_ttl=args.cache_ttl,
        upstream_username=args.upstream_username,
        upstream_password=args.upstream_password,
        flat_alias_prefix=args.flat_alias_prefix,
        is_catch_all=args.catch_all,
        host_name=args.host_name,
        untagged_manifests=args.untagged_manifests,
        cleanup_policy=_cleanup_policy(args),
        cache_max_age_days=_cache_limit(args.cache_max_age_days, _days),
        cache_max_bytes=_cache_limit(args.cache_max_bytes, parse_size),
    )
    state = "on" if repository.anonymous_read else "off"
    _say(
        f"repository {repository.project}/{repository.name}: anonymous read {state},"
        f" untagged manifests: {repository.untagged_manifests}"
    )
    if repository.cleanup_policy is not None:
        _say(f"cleanup policy: {json.dumps(repository.cleanup_policy)}")


async def repo_list(services: Services, args: argparse.Namespace) -> None:
    for repository in await services.projects.list_repositories():
        details = [f"anonymous_read={str(repository.anonymous_read).lower()}"]
        if repository.is_proxy:
            details += [f"remote_url={repository.remote_url}", f"cache_ttl={repository.cache_ttl}"]
        if repository.flat_alias_prefix:
            details.append(f"alias={repository.flat_alias_prefix}")
        if repository.is_catch_all:
            details.append("catch_all")
        if repository.host_name:
            details.append(f"host={repository.host_name}")
        if repository.cleanup_policy is not None:
            details.append(
                f"cleanup={json.dumps(repository.cleanup_policy, separators=(',', ':'))}"
            )
        if repository.cache_max_age_days is not None:
            details.append(f"cache_max_age_days={repository.cache_max_age_days}")
        if repository.cache_max_bytes is not None:
            details.append(f"cache_max_bytes={repository.cache_max_bytes}")
        if repository.untagged_manifests != "keep":
            details.append(f"untagged_manifests={repository.untagged_manifests}")
        print(
            f"{repository.project}/{repository.name}\t{repository.kind}\t{repository.format}"
            f"\t{' '.join(details)}"
        )


# Users


async def user_create(services: Services, args: argparse.Namespace) -> None:
    user, generated = await services.accounts_admin.create_user(
        args.name, _read_password(args), is_admin=args.admin
    )
    _say(f"created {'system administrator' if user.is_admin else 'user'} {user.name}")
    if generated is not None:
        _say("its password, shown this once:")
        print(generated)


async def user_update(services: Services, args: argparse.Namespace) -> None:
    user = await services.accounts_admin.update_user(
        args.name, password=_read_password(args), is_admin=args.admin, disabled=args.disabled
    )
    _say(f"updated user {user.name}")


async def user_delete(services: Services, args: argparse.Namespace) -> None:
    await services.accounts_admin.delete_user(args.name)
    _say(f"deleted user {args.name}")


async def user_list(services: Services, args: argparse.Namespace) -> None:
    for user in await services.accounts_admin.list_users():
        flags = [flag for flag, on in (("admin", user.is_admin), ("disabled", user.disabled)) if on]
        print(f"{user.name}\t{','.join(flags) or '-'}")


# Robots


def _grants(values: Sequence[str] | None) -> list[GrantSpec] | None:
    return None if values is None else [GrantSpec.parse(value) for value in values]


def _describe(robot: RobotRecord) -> str:
    grants = " ".join(
        f"{grant.project}{'/' + grant.repository if grant.repository else ''}"
        f"={','.join(grant.actions)}"
        for grant in robot.grants
    )
    state = "disabled" if robot.disabled else "enabled"
    return (
        f"{ROBOT_PREFIX}{robot.name}\t{state}\texpires={_time(robot.expires_at)}"
        f"\tlast_used={_time(robot.last_used_at)}\t{grants or '-'}"
    )


async def robot_create(services: Services, args: argparse.Namespace) -> None:
    robot, key = await services.accounts_admin.create_robot(
        args.name,
        _grants(args.grant) or [],
        expires_in_seconds=None if args.expires_in_days is None else args.expires_in_days * 86400,
        description=args.description,
    )
    _say(f"created robot {ROBOT_PREFIX}{robot.name}; its API key, shown this once:")
    print(key)


async def robot_update(services: Services, args: argparse.Namespace) -> None:
    robot = await services.accounts_admin.update_robot(
        args.name, disabled=args.disabled, grants=_grants(args.grant), description=args.description
    )
    _say(f"updated {_describe(robot)}")


async def robot_rotate(services: Services, args: argparse.Namespace) -> None:
    robot, key = await services.accounts_admin.rotate_robot_key(args.name)
    _say(f"new API key for {ROBOT_PREFIX}{robot.name} (the old one no longer works):")
    print(key)


async def robot_delete(services: Services, args: argparse.Namespace) -> None:
    await services.accounts_admin.delete_robot(args.name)
    _say(f"deleted robot {args.name}")


async def robot_list(services: Services, args: argparse.Namespace) -> None:
    for robot in await services.accounts_admin.list_robots():
        print(_describe(robot))


# Integrity


def _outcome(report: FsckReport, repaired: bool, done: str) -> str:
    if not report.repair:
        return ""
    return f" -> {done}" if repaired else " -> left as it is"


def _fsck_summary(report: FsckReport) -> list[str]:
    """The report for people, one finding a line."""
    lines = [
        f"checked {report.blobs_checked} blobs and {report.manifests_checked} manifests"
        f" ({human_size(report.bytes_checked)}), {report.files_checked} stored files and"
        f" {report.uploads_checked} upload sessions in {report.seconds:.1f}s"
    ]
    for corrupt in report.corrupt:
        where = f"quarantined to {corrupt.quarantined_to}, " if corrupt.quarantined_to else ""
        lines.append(
            f"corrupt: {corrupt.digest} ({'+'.join(corrupt.kinds)}, in"
            f" {', '.join(corrupt.images) or 'no image'}): {corrupt.reason}"
            + _outcome(report, corrupt.repaired, f"{where}rows removed")
        )
    for missing in report.missing:
        lines.append(
            f"missing: {missing.digest} ({'+'.join(missing.kinds)}, in"
            f" {', '.join(missing.images) or 'no image'}): its bytes are not in the store"
            + _outcome(report, missing.repaired, "rows removed")
        )
    for wrong in report.wrong_size:
        lines.append(
            f"wrong size: {wrong.digest} is recorded as {wrong.recorded} bytes but holds"
            f" {wrong.actual}" + _outcome(report, wrong.repaired, "corrected")
        )
    for orphan in report.orphans:
        size = "?" if orphan.size is None else str(orphan.size)
        lines.append(
            f"orphan: {orphan.digest} ({size} bytes) is stored but no row describes it"
            + _outcome(report, orphan.repaired, "deleted")
        )
    for upload in report.stale_uploads:
        lines.append(
            f"stale upload: {upload.id} ({upload.reason})"
            + _outcome(report, upload.repaired, "removed")
        )
    for tag in report.dangling_tags:
        lines.append(
            f"dangling tag: {tag.image}:{tag.tag} points to {tag.digest}, which the image"
            " does not hold" + _outcome(report, tag.repaired, "removed")
        )
    if report.recent_unreferenced:
        lines.append(
            f"{report.recent_unreferenced} recent files or sessions without rows (pushes in"
            " flight) were left alone"
        )
    for manifest in report.incomplete_manifests:
        lines.append(
            f"warning: {manifest.image}@{manifest.manifest} points to"
            f" {', '.join(manifest.missing)}, which the image lacks: push it again"
        )
    lines.extend(f"repair failed: {error}" for error in report.errors)
    if report.clean:
        warnings = len(report.incomplete_manifests)
        lines.append(f"clean, {warnings} warning(s)" if warnings else "clean")
    elif not report.repair:
        lines.append(f"{report.problems} problem(s) found; `cargohold fsck --repair` repairs them")
    elif report.repaired:
        lines.append(f"{report.problems} problem(s) found and repaired")
    else:
        lines.append(f"{report.problems} problem(s) found; {len(report.errors)} repair(s) failed")
    return lines


async def fsck(services: Services, args: argparse.Namespace) -> int:
    report = await services.integrity.run(repair=args.repair, progress=_say)
    for line in _fsck_summary(report):
        _say(line)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    return report.exit_code


# Garbage collection


def _gc_summary(report: GcReport) -> list[str]:
    """The report for people: what went (or would go), one line each, then the totals."""
    verb = "would remove" if report.dry_run else "removed"
    lines = [f"manifest: {entry.image}@{entry.digest}" for entry in report.manifests]
    lines += [f"blob: {entry.digest} ({entry.size} bytes)" for entry in report.blobs]
    lines.append(
        f"{'dry run: ' if report.dry_run else ''}{verb} {len(report.manifests)} manifests,"
        f" {report.links} links of images to unused blobs, {len(report.blobs)} blobs and"
        f" {report.files} stored files ({human_size(report.bytes_freed)}) in"
        f" {report.seconds:.1f}s; content younger than {report.grace_seconds:g}s was left alone"
    )
    return lines


async def gc(services: Services, args: argparse.Namespace) -> None:
    report = await services.gc.run(dry_run=args.dry_run, grace_seconds=args.grace_seconds)
    for line in _gc_summary(report):
        _say(line)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))


# Cleanup


async def cleanup(services: Services, args: argparse.Namespace) -> None:
    project, _, repository = (args.scope or "").partition("/")
    report = await services.cleanup.run(project or None, repository or None, dry_run=args.dry_run)
    for line in report.lines():
        _say(line)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))


def _administer(action: Action) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        settings = _settings(args)

        async def go() -> int:
            services = await build_services(settings)
            try:
                return await action(services, args) or 0
            finally:
                await services.close()

        return asyncio.run(go())

    return run


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cargohold", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def command(parent: Any, name: str, handler: Any, help: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = parent.add_parser(name, help=help, description=help)
        sub.add_argument("--data-dir", type=Path, help="where metadata and blobs live")
        sub.add_argument("--config", type=Path, help="a TOML settings file")
        plain = handler in (serve, migrate_schema, copy)
        sub.set_defaults(handler=handler if plain else _administer(handler))
        return sub

    def group(name: str, help: str) -> Any:
        return commands.add_parser(name, help=help).add_subparsers(dest="action", required=True)

    def switch(sub: argparse.ArgumentParser, name: str, help: str, default: Any = None) -> None:
        sub.add_argument(
            f"--{name}", action=argparse.BooleanOptionalAction, default=default, help=help
        )

    def upstream_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--remote-url", help="a proxy's upstream, e.g. https://registry-1.docker.io"
        )
        sub.add_argument("--cache-ttl", type=int, help="seconds a cached tag is served unchecked")
        sub.add_argument("--upstream-username", help="the proxy's account upstream")
        sub.add_argument("--upstream-password", help="the proxy's password upstream")

    def untagged_option(sub: argparse.ArgumentParser, default: str | None) -> None:
        sub.add_argument(
            "--untagged-manifests",
            choices=UNTAGGED_MANIFEST_POLICIES,
            default=default,
            help="what garbage collection does with manifests no tag, index or referrer needs",
        )

    def routing_options(sub: argparse.ArgumentParser, catch_all_default: bool | None) -> None:
        sub.add_argument(
            "--flat-alias-prefix", help="a second name prefix, e.g. common/external/ ('' removes)"
        )
        switch(sub, "catch-all", "take the names no prefix matches", default=catch_all_default)
        sub.add_argument("--host-name", help="a host name bound to the repository ('' removes)")

    def lifecycle_options(sub: argparse.ArgumentParser) -> None:
        policy = sub.add_argument_group(
            "cleanup policy (hosted; any of these replaces the policy, every rule given must"
            " hold for a tag to be deleted)"
        )
        policy.add_argument(
            "--cleanup-keep-last",
            type=int,
            metavar="N",
            help="keep the N most recently pushed tags of each image",
        )
        policy.add_argument(
            "--cleanup-older-than-days",
            type=float,
            metavar="DAYS",
            help="delete tags pushed more than DAYS ago",
        )
        policy.add_argument(
            "--cleanup-unpulled-days",
            type=float,
            metavar="DAYS",
            help="delete tags not pulled for DAYS (never pulled: since pushed)",
        )
        policy.add_argument(
            "--cleanup-keep",
            action="append",
            metavar="REGEX",
            help="never delete tags matching it (whole tag); repeatable",
        )
        policy.add_argument(
            "--cleanup-match",
            action="append",
            metavar="REGEX",
            help="consider only tags matching one of these; repeatable",
        )
        policy.add_argument("--no-cleanup", action="store_true", help="remove the policy")
        cache = sub.add_argument_group("proxy cache limits ('none' removes)")
        cache.add_argument(
            "--cache-max-age-days", metavar="DAYS", help="evict what was not pulled for DAYS"
        )
        cache.add_argument(
            "--cache-max-bytes",
            metavar="SIZE",
            help="evict the least recently pulled beyond SIZE, e.g. 50GiB",
        )

    serve_parser = command(commands, "serve", serve, "run the registry server")
    serve_parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve_parser.add_argument("--port", type=int, help="port to listen on (default 5000)")
    serve_parser.add_argument("--workers", type=int, help="server processes (default 1)")

    command(
        commands,
        "migrate",
        migrate_schema,
        "bring the metadata database's schema to the newest revision, then exit",
    )

    sub = command(
        commands,
        "copy",
        copy,
        "copy an installation (its metadata and blobs, e.g. SQLite and a folder) into the"
        " database and blob store of these settings (e.g. PostgreSQL and S3), checking every"
        " digest; stop the source's server first",
    )
    sub.add_argument("--from-config", type=Path, help="the source's TOML settings file")
    sub.add_argument("--from-data-dir", type=Path, help="the source's data folder")
    sub.add_argument("--json", action="store_true", help="print the report as JSON on stdout")

    project = group("project", "manage projects and their members")
    quota_help = "bytes its hosted repositories may hold: 1073741824, 500MB, 10GiB"
    sub = command(project, "create", project_create, "create a project")
    sub.add_argument("name")
    switch(sub, "anonymous-read", "let anyone pull from the project", default=False)
    sub.add_argument("--quota-bytes", metavar="SIZE", help=f"{quota_help} (default unlimited)")
    sub = command(project, "update", project_update, "change a project")
    sub.add_argument("name")
    switch(sub, "anonymous-read", "let anyone pull from the project")
    sub.add_argument("--quota-bytes", metavar="SIZE", help=f"{quota_help}, or none: unlimited")
    command(project, "list", project_list, "list projects")
    sub = command(project, "member-set", member_set, "give a user a role in a project")
    sub.add_argument("project")
    sub.add_argument("user")
    sub.add_argument("role", choices=list(ROLES))
    sub = command(project, "member-remove", member_remove, "remove a user from a project")
    sub.add_argument("project")
    sub.add_argument("user")
    command(project, "members", member_list, "list a project's members").add_argument("project")

    repo = group("repo", "manage repositories")
    sub = command(repo, "create", repo_create, "create a repository in a project")
    sub.add_argument("project")
    sub.add_argument("name")
    sub.add_argument("--type", default="hosted", help="hosted or proxy")
    sub.add_argument("--format", default="docker", help="repository format (docker)")
    switch(sub, "anonymous-read", "let anyone pull from the repository", default=False)
    upstream_options(sub)
    routing_options(sub, catch_all_default=False)
    untagged_option(sub, default="keep")
    sub = command(repo, "update", repo_update, "change a repository")
    sub.add_argument("project")
    sub.add_argument("name")
    switch(sub, "anonymous-read", "let anyone pull from the repository")
    upstream_options(sub)
    routing_options(sub, catch_all_default=None)
    untagged_option(sub, default=None)
    lifecycle_options(sub)
    command(repo, "list", repo_list, "list repositories")

    user = group("user", "manage users")
    sub = command(
        user, "create", user_create, "create a user (a password is generated unless given)"
    )
    sub.add_argument("name")
    sub.add_argument("--admin", action="store_true", help="a system administrator")
    sub.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    sub = command(user, "update", user_update, "change a user")
    sub.add_argument("name")
    sub.add_argument("--password-stdin", action="store_true", help="read a new password from stdin")
    switch(sub, "admin", "make or unmake a system administrator")
    switch(sub, "disabled", "disable or re-enable the account")
    command(user, "delete", user_delete, "delete a user").add_argument("name")
    command(user, "list", user_list, "list users")

    robot = group("robot", "manage robot accounts (sa$<name>)")
    sub = command(robot, "create", robot_create, "create a robot and print its API key once")
    sub.add_argument("name", help="the robot's name, with or without sa$")
    sub.add_argument(
        "--grant",
        action="append",
        metavar="PROJECT[/REPOSITORY]=ACTIONS",
        help="allow actions (pull, push, delete) in a project or repository; repeatable",
    )
    sub.add_argument("--expires-in-days", type=float, help="the key stops working after this")
    sub.add_argument("--description", default="", help="what the robot is for")
    sub = command(robot, "update", robot_update, "change a robot (grants are replaced)")
    sub.add_argument("name")
    sub.add_argument("--grant", action="append", metavar="PROJECT[/REPOSITORY]=ACTIONS")
    sub.add_argument("--description")
    switch(sub, "disabled", "disable or re-enable the robot")
    command(robot, "rotate", robot_rotate, "replace a robot's API key").add_argument("name")
    command(robot, "delete", robot_delete, "delete (revoke) a robot").add_argument("name")
    command(robot, "list", robot_list, "list robots")

    sub = command(
        commands,
        "fsck",
        fsck,
        "check that stored bytes match their digests and that metadata and store agree",
    )
    sub.add_argument(
        "--repair",
        action="store_true",
        help="quarantine corrupt blobs, remove rows whose bytes are gone, delete orphan files,"
        " sweep stale upload sessions",
    )
    sub.add_argument("--json", action="store_true", help="print the report as JSON on stdout")

    sub = command(
        commands,
        "gc",
        gc,
        "delete manifests and blobs that no tag, index or referrer needs (safe while serving)",
    )
    sub.add_argument(
        "--dry-run", action="store_true", help="report what would be deleted, delete nothing"
    )
    sub.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    sub.add_argument(
        "--grace-seconds",
        type=float,
        help="leave content uploaded this recently alone (default: the gc_grace_seconds setting)",
    )

    sub = command(
        commands,
        "cleanup",
        cleanup,
        "apply the repositories' cleanup policies and proxy cache limits",
    )
    sub.add_argument(
        "scope", nargs="?", metavar="PROJECT[/REPOSITORY]", help="only these (default: all)"
    )
    sub.add_argument("--dry-run", action="store_true", help="report what would go; remove nothing")
    sub.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        result: int = args.handler(args)
    except ManagementError as error:
        print(f"cargohold: {error}", file=sys.stderr)
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
