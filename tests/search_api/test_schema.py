"""Schemathesis against the app's own OpenAPI document (in-process, through WSGI).

Checks: no server errors, responses that conform to the document, invalid data
rejected, and auth that is not ignored. Every operation gets a Hypothesis run
with valid data and one with invalid data, sent with the API key (the
``ignored_auth`` check sends its own requests without it and wants 401).
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    ignored_auth,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
)

from search_api import create_app

pytestmark = pytest.mark.slow

CHECKS = [not_a_server_error, response_schema_conformance, negative_data_rejection, ignored_auth]


def test_every_operation_keeps_the_document(indexed, auth):
    app = create_app(engine=indexed)
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {operation.label for operation in operations}
    assert len(labels) == 16  # all but the document itself
    assert {"POST /api/v1/search", "POST /api/v1/explain"} <= labels
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=15, deadline=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            def run(case):
                checks = CHECKS
                if case.media_type == "multipart/form-data":
                    # A form field is text on the wire: a "wrong type" true or 5 arrives
                    # as the valid strings "true" and "5", so it cannot be rejected.
                    checks = [c for c in CHECKS if c is not negative_data_rejection]
                case.call_and_validate(headers=auth, checks=checks)

            try:
                run()
            except Unsatisfiable:
                # No input to make invalid (GET /healthz): only the positive run applies.
                assert mode is GenerationMode.NEGATIVE, operation.label
    assert indexed.catalog.counts()["indexed"] == 12  # random ids never hit a real item
