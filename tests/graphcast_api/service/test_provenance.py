"""The real service names its checkpoint (file and SHA-256), precision, device and version in
`/v1/model` and in every forecast reply."""
from __future__ import annotations

import hashlib

import requests

from graphcast_contract.project import VERSION
from tests.graphcast_api.service.helpers import REFERENCE_DIR, reference_request


def test_model_and_forecast_replies_carry_the_provenance(reference_server: str) -> None:
    expected = {"checkpoint_file": "params.npz",
                "checkpoint_sha256": hashlib.sha256(
                    (REFERENCE_DIR / "params.npz").read_bytes()).hexdigest(),
                "precision": "fp32", "device": "cpu", "version": VERSION}
    info = requests.get(f"{reference_server}/v1/model", timeout=30).json()
    assert info["provenance"] == expected
    reply = requests.post(f"{reference_server}/v1/forecast", timeout=300,
                          json=reference_request(lead_hours=[6])).json()
    assert reply["provenance"] == expected
