"""A small stand-in for the Copernicus Climate Data Store's retrieve API, on loopback.

It speaks the protocol `cdsapi` (through `ecmwf-datastores-client`) uses with a personal
access token: GET the process, POST its execution, GET the job and its results, GET the
file. Each submitted request is recorded; the file served is made by a callback from the
dataset name and the request.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.loopback import LoopbackServer

MakeFile = Callable[[str, dict[str, Any]], bytes]


class FakeCds(LoopbackServer):
    """Run with `with FakeCds(token, make_file) as cds:`; `cds.url` is the API root."""

    def __init__(self, token: str, make_file: MakeFile, fail_with: int | None = None) -> None:
        self.token = token
        self.make_file = make_file
        self.fail_with = fail_with
        self.submitted: list[tuple[str, dict[str, Any]]] = []
        self.files: dict[str, bytes] = {}
        self.jobs: dict[str, str] = {}
        self.url = self._listen(self._handler()) + "/api"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        cds = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, status: int, body: Any) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream"
                                 if isinstance(body, bytes) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                parts = path.strip("/").split("/")
                if path.startswith("/api/files/"):
                    return self._reply(200, cds.files[parts[-1]])
                if path == "/api/catalogue/v1/messages":
                    return self._reply(200, {"messages": []})
                if self.headers.get("PRIVATE-TOKEN") != cds.token:
                    return self._reply(401, {"title": "Unauthorized", "detail": "bad token"})
                if parts[:4] == ["api", "retrieve", "v1", "processes"] and len(parts) == 5:
                    return self._reply(200, {"id": parts[4], "links": []})
                if parts[:4] == ["api", "retrieve", "v1", "jobs"] and len(parts) == 5:
                    job = parts[4]
                    results = f"{cds.url}/retrieve/v1/jobs/{job}/results"
                    return self._reply(200, {
                        "jobID": job, "status": "successful", "processID": cds.jobs[job],
                        "metadata": {}, "links": [{"rel": "results", "href": results}]})
                if parts[:4] == ["api", "retrieve", "v1", "jobs"] and parts[-1] == "results":
                    job = parts[4]
                    return self._reply(200, {"asset": {"value": {
                        "href": f"{cds.url}/files/{job}", "file:size": len(cds.files[job]),
                        "type": "application/octet-stream"}}})
                return self._reply(404, {"title": "not found", "detail": path})

            def do_POST(self) -> None:
                parts = self.path.split("?")[0].strip("/").split("/")
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.headers.get("PRIVATE-TOKEN") != cds.token:
                    return self._reply(401, {"title": "Unauthorized", "detail": "bad token"})
                if parts[:4] != ["api", "retrieve", "v1", "processes"] or parts[-1] != "execution":
                    return self._reply(404, {"title": "not found", "detail": self.path})
                dataset = parts[4]
                cds.submitted.append((dataset, body["inputs"]))
                if cds.fail_with:
                    return self._reply(cds.fail_with, {"title": "request failed",
                                                       "detail": "the fake CDS refuses"})
                job = uuid.uuid4().hex
                cds.jobs[job] = dataset
                cds.files[job] = cds.make_file(dataset, body["inputs"])
                return self._reply(201, {"jobID": job, "status": "successful", "links": [
                    {"rel": "monitor", "href": f"{cds.url}/retrieve/v1/jobs/{job}"}]})

        return Handler
