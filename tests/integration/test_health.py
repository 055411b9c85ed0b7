from __future__ import annotations

import requests

from tests.integration.server import Server


def test_liveness_and_readiness(server: Server) -> None:
    for path in ("/healthz", "/readyz"):
        response = requests.get(server.url + path, timeout=10)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
