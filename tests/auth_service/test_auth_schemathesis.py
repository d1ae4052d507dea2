"""Property-based API test: schemathesis against the served OpenAPI document, bounded examples.

Every operation is exercised with generated inputs (authenticated with a real access token); the run must show
0 server errors, 0 responses that violate the documented schema and 0 undocumented status codes.
"""

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

MAX_EXAMPLES = 12
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]


def _fuzz(operation, mode: GenerationMode, auth, failures: list[str], seen: Counter) -> None:
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        # A fresh session per case: a generated logout (scope=global) must not starve later cases of a token.
        response = case.call(headers=auth.bearer(auth.tokens()))
        seen[(mode.value, operation.label, response.status_code)] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except AssertionError as exc:  # schemathesis raises a FailureGroup (an AssertionError)
            failures.append(f"{operation.label}: {exc}"[:2000])

    try:
        run()
    except Unsatisfiable:  # no parameters to break (e.g. GET /healthz): nothing negative to send
        assert mode is GenerationMode.NEGATIVE


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_api_conforms_to_its_openapi_document(app, auth, mode):
    # A configured billing webhook: unsigned generated events meet the signature check (unconfigured is a 503)
    app.config.update(
        THROTTLE_ACCOUNT_IP_THRESHOLD=10**6, THROTTLE_IP_THRESHOLD=10**6, BILLING_WEBHOOK_SECRETS="whsec-fuzz"
    )
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    failures: list[str] = []
    seen: Counter = Counter()
    operations = 0
    for result in schema.get_all_operations():
        operations += 1
        _fuzz(result.ok(), mode, auth, failures, seen)
    print(sorted(seen.items()))
    assert operations >= 15
    assert sum(seen.values()) >= operations * 3  # the run really exercised the API
    assert not failures, "\n\n".join(failures)
