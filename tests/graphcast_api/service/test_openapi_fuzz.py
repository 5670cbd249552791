"""The OpenAPI schema documents everything, and schemathesis fuzzes every operation of it
against the real service: no server errors, and every response conforms to the schema.

The check that schema-valid bodies are accepted is left out: the schema cannot express the
model-dependent rules (array shapes, variable names), so such bodies rightly get 422.
"""
from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from graphcast_api.service.app import create_app

OPENAPI = create_app().openapi()
SCHEMA = schemathesis.openapi.from_dict(OPENAPI)


def test_every_route_field_and_schema_is_documented() -> None:
    for path, operations in OPENAPI["paths"].items():
        for method, operation in operations.items():
            assert operation.get("description"), (method, path)
    for name, schema in OPENAPI["components"]["schemas"].items():
        assert schema.get("examples"), f"{name} has no example"
        for field, spec in schema.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{field} has no description"
    assert set(OPENAPI["paths"]) == {"/health", "/v1/model", "/v1/forecast"}


@SCHEMA.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_requests_get_no_server_error(case: schemathesis.Case,
                                            reference_server: str) -> None:
    case.call_and_validate(base_url=reference_server, timeout=60,
                           excluded_checks=[positive_data_acceptance])
