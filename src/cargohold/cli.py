"""The command line: serve, and the administration of projects and repositories."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from cargohold.app import create_app
from cargohold.config import Settings, load_settings
from cargohold.db.engine import migrate
from cargohold.registry.errors import ManagementError
from cargohold.registry.services import Services, build_services

T = TypeVar("T")


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    settings = load_settings(args.config, {"data_dir": args.data_dir, **overrides})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.metadata_url)
    return settings


def _with_services(settings: Settings, action: Callable[[Services], Awaitable[T]]) -> T:
    async def run() -> T:
        services = await build_services(settings)
        try:
            return await action(services)
        finally:
            await services.close()

    return asyncio.run(run())


def serve(args: argparse.Namespace) -> int:
    settings = _settings(args, host=args.host, port=args.port)
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        print=lambda _: print(
            f"cargohold serving on http://{settings.host}:{settings.port}"
            f" (data in {settings.data_dir.resolve()})",
            flush=True,
        ),
    )
    return 0


def project_create(args: argparse.Namespace) -> int:
    project = _with_services(_settings(args), lambda s: s.projects.create_project(args.name))
    print(f"created project {project.name}")
    return 0


def project_list(args: argparse.Namespace) -> int:
    for project in _with_services(_settings(args), lambda s: s.projects.list_projects()):
        print(project.name)
    return 0


def repo_create(args: argparse.Namespace) -> int:
    repository = _with_services(
        _settings(args),
        lambda s: s.projects.create_repository(args.project, args.name, args.type, args.format),
    )
    print(f"created {repository.kind} repository {repository.project}/{repository.name}")
    return 0


def repo_list(args: argparse.Namespace) -> int:
    for repository in _with_services(_settings(args), lambda s: s.projects.list_repositories()):
        print(f"{repository.project}/{repository.name}\t{repository.kind}\t{repository.format}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cargohold", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(
        parent: Any, name: str, handler: Callable[[argparse.Namespace], int], help: str
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = parent.add_parser(name, help=help)
        sub.add_argument("--data-dir", type=Path, help="where metadata and blobs live")
        sub.add_argument("--config", type=Path, help="a TOML settings file")
        sub.set_defaults(handler=handler)
        return sub

    serve_parser = command(commands, "serve", serve, "run the registry server")
    serve_parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve_parser.add_argument("--port", type=int, help="port to listen on (default 5000)")

    project = commands.add_parser("project", help="manage projects")
    project_commands = project.add_subparsers(dest="action", required=True)
    command(project_commands, "create", project_create, "create a project").add_argument("name")
    command(project_commands, "list", project_list, "list projects")

    repo = commands.add_parser("repo", help="manage repositories")
    repo_commands = repo.add_subparsers(dest="action", required=True)
    create = command(repo_commands, "create", repo_create, "create a repository in a project")
    create.add_argument("project")
    create.add_argument("name")
    create.add_argument("--type", default="hosted", help="repository type (hosted)")
    create.add_argument("--format", default="docker", help="repository format (docker)")
    command(repo_commands, "list", repo_list, "list repositories")
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
