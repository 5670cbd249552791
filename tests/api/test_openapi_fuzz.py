"""Schemathesis fuzzes every operation of the OpenAPI schema against the real service:
no server errors, and every response conforms to the schema.

The check that schema-valid bodies are accepted is left out: the schema cannot express the
model-dependent rules (array shapes, variable names), so such bodies rightly get 422.
"""
from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from graphcast_api.app import create_app

SCHEMA = schemathesis.openapi.from_dict(create_app().openapi())


@SCHEMA.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_requests_get_no_server_error(case: schemathesis.Case,
                                            reference_server: str) -> None:
    case.call_and_validate(base_url=reference_server, timeout=60,
                           excluded_checks=[positive_data_acceptance])
