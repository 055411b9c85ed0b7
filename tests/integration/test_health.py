from __future__ import annotations

import requests

from tests.integration.server import Server


def test_liveness_and_readiness(server: Server) -> None:
    for path in ("/healthz", "/readyz"):
        response = requests.get(server.url + path, timeout=10)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


def test_api_version_check(server: Server) -> None:
    """`GET /v2/` answers 200 and every /v2/ answer, errors too, names the API version."""
    for path, status in [("/v2/", 200), ("/v2/no/such/thing/tags/list", 404)]:
        response = requests.get(server.url + path, auth=server.admin_auth, timeout=10)
        assert response.status_code == status
        assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
