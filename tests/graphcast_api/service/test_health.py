"""/health says `loading` (503) until a model is set, then `ok`; other routes wait for it."""
from __future__ import annotations

import threading

import requests
import uvicorn

from graphcast_api.service.app import create_app, set_model
from graphcast_contract.local_service import free_port
from tests.graphcast_api.service.helpers import SlowPersistence, reference_request


def test_health_and_routes_before_and_after_the_model_is_loaded() -> None:
    app = create_app()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        while not server.started:
            thread.join(0.05)
        loading = requests.get(f"{url}/health", timeout=10)
        assert (loading.status_code, loading.json()) == (503, {"status": "loading"})
        for response in (requests.get(f"{url}/v1/model", timeout=10),
                         requests.post(f"{url}/v1/forecast", json=reference_request(),
                                       timeout=10)):
            assert response.status_code == 503
            assert response.json() == {"detail": "model not loaded yet"}
            assert int(response.headers["Retry-After"]) > 0
        set_model(app, SlowPersistence(seconds=0))
        ready = requests.get(f"{url}/health", timeout=10)
        assert (ready.status_code, ready.json()) == (200, {"status": "ok",
                                                           "model": "slow-persistence"})
        assert requests.get(f"{url}/v1/model", timeout=10).status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=30)
