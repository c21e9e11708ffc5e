"""Schemathesis fuzzes every operation of the app's own OpenAPI schema: no request, however
malformed, gets a server error, and every status is one the schema declares."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance


@pytest.fixture(scope="module")
def api_schema(live):
    return schemathesis.openapi.from_url(live.url + "/openapi.json")


# /api/runs/live is an endless event stream; the runs tests read it
schema = schemathesis.pytest.from_fixture("api_schema").exclude(path="/api/runs/live")


@schema.parametrize()
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error(case, live):
    case.call_and_validate(base_url=live.url, checks=[not_a_server_error,
                                                      status_code_conformance], timeout=30)
