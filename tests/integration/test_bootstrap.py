"""The first start: a system administrator exists however the installation began."""

from __future__ import annotations

import re
from pathlib import Path

import requests

from tests.integration.server import ADMIN_PASSWORD, Server

GENERATED = re.compile(r"created user admin with password: (\S+)")


def _signs_in(server: Server, user: str, password: str) -> bool:
    response = requests.get(server.url + "/v2/", auth=(user, password), timeout=10)
    return response.status_code == 200


def test_a_generated_admin_password_is_printed_once_and_works(tmp_path: Path) -> None:
    server = Server(tmp_path / "data")
    server.start(env={"CARGOHOLD_ADMIN_PASSWORD": ""})
    try:
        printed = GENERATED.findall(server.log())
        assert len(printed) == 1
        assert _signs_in(server, "admin", printed[0])
        server.stop()
        server.start()
        assert len(GENERATED.findall(server.log())) == 1  # not again on the next start
        assert _signs_in(server, "admin", printed[0])  # nor replaced
    finally:
        server.stop()


def test_users_made_before_the_first_start_do_not_prevent_an_admin(tmp_path: Path) -> None:
    server = Server(tmp_path / "data")
    server.create_user("early", "early-password")
    server.start()
    try:
        assert _signs_in(server, "admin", ADMIN_PASSWORD)
        assert _signs_in(server, "early", "early-password")
    finally:
        server.stop()
