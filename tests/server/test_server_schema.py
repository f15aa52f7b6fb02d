"""The server's OpenAPI document is true: schemathesis (Python API) generates requests
from it, valid and invalid, and every answer must be a documented status with a body and
headers matching the schema, and never a server error.

Random requests rarely carry a valid signature, so they stop at 401/404 before the body
parser; the second test signs whatever body schemathesis draws with a registered kiosk's
key, so the parser itself meets the fuzzing.
"""

from __future__ import annotations

import itertools
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from starlette.testclient import TestClient

from deskpulse.device import registration
from deskpulse.protocol import signing
from deskpulse.protocol.batch import Response, encode_batch
from deskpulse.server.app import create_app
from deskpulse.sim.push_client import batch_path
from deskpulse.store import open_store

# positive_data_acceptance is left out on purpose: a body that matches the schema (any
# bytes) with a drawn signature is rightly refused (400/401/404), not accepted.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance,
          negative_data_rejection, missing_required_header, unsupported_method]
CONFIG = schemathesis.Config.from_dict({
    "generation": {"max-examples": 150},
    # A body over maxLength is rejected as HTTP says, with 413; 411 when chunked.
    "checks": {"negative_data_rejection": {"expected-statuses": [
        "400", "401", "404", "405", "409", "411", "413", "415", "422"]}},
})
DEVICE = "front-1"


@schemathesis.serializer(signing.CONTENT_TYPE)
def _batch_bytes(ctx: Any, value: Any) -> bytes:
    """The body is opaque bytes to the schema; negative cases may draw other types."""
    if isinstance(value, bytes):
        return value
    return json.dumps(value).encode() if not isinstance(value, str) else value.encode()


class Registered:
    """A database with one registered kiosk, and the app serving it."""

    def __init__(self, tmp: Path) -> None:
        self.db_path = tmp / "schema.db"
        conn = open_store(self.db_path)
        registration.add_device(conn, DEVICE, "http://127.0.0.1:8080", tmp / "front.json")
        self.key = conn.device_key(DEVICE) or b""
        conn.close()
        self.app = create_app(self.db_path, api_docs=True)
        self._counts = itertools.count(1)

    def sign(self, body: bytes) -> dict[str, str]:
        nonce = f"1.{next(self._counts)}"
        return {"Content-Type": signing.CONTENT_TYPE, "X-DeskPulse-Nonce": nonce,
                "X-DeskPulse-Signature": signing.sign_request(
                    self.key, "POST", batch_path(DEVICE), DEVICE, nonce, body)}


# Built at import: schemathesis parametrizes the tests from the app's own document.
_TMP = tempfile.TemporaryDirectory(prefix="deskpulse-schema-")
SITE = Registered(Path(_TMP.name))
schema = schemathesis.openapi.from_asgi("/openapi.json", SITE.app, config=CONFIG)
CLIENT = TestClient(SITE.app)


@pytest.fixture
def registered() -> Registered:
    return SITE


@schema.parametrize()
@settings(suppress_health_check=list(HealthCheck), deadline=None)
@pytest.mark.slow
def test_every_answer_matches_the_openapi_document(case: Any) -> None:
    case.call_and_validate(checks=CHECKS)


@schema.include(path_regex="batches").parametrize()
@settings(suppress_health_check=list(HealthCheck), deadline=None)
def test_signed_random_bodies_never_break_the_server(case: Any) -> None:
    body = case.body
    if not isinstance(body, bytes):
        return  # a negative case whose body is not even bytes: covered above
    case.path_parameters = {"device_id": DEVICE}
    case.headers = SITE.sign(body)
    response = case.call()
    assert response.status_code in (200, 400, 409, 413, 422), response.text
    case.validate_response(response, checks=CHECKS)


def test_the_document_declares_the_wire_format(registered: Registered) -> None:
    with TestClient(registered.app) as client:
        doc = client.get("/openapi.json").json()
    push = doc["paths"]["/v1/devices/{device_id}/batches"]["post"]
    assert list(push["requestBody"]["content"]) == [signing.CONTENT_TYPE]
    assert push["requestBody"]["content"][signing.CONTENT_TYPE]["schema"]["format"] == "binary"
    params = {(p["in"], p["name"]): p for p in push["parameters"]}
    assert set(params) == {("path", "device_id"), ("header", "X-DeskPulse-Nonce"),
                           ("header", "X-DeskPulse-Signature")}
    assert all(p["required"] for p in params.values())
    assert sorted(push["responses"]) == ["200", "400", "401", "404", "409", "411", "413",
                                         "415", "422", "503"]
    assert "X-DeskPulse-Signature" in push["responses"]["200"]["headers"]
    health = doc["paths"]["/v1/health"]["get"]
    assert sorted(health["responses"]) == ["200", "503"]


# Structured fuzzing of what follows a valid signature: JSON lines of every shape and
# batch bytes near the real encoding. Every answer is 200, 400, 409 (a replay) or 422 (a
# mutated record that clashes with a stored one), never a 5xx.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
heads = st.fixed_dictionaries(
    {}, optional={"status": json_values, "anchors": json_values, "boot": json_values,
                  "uptime_s": json_values}) | json_values
REAL_BATCH = encode_batch([
    Response(seq, 3, 4, "yes", 2.5, False, False, 1, 60 * seq, None, 0) for seq in (1, 2, 3)])
payloads = st.one_of(st.binary(max_size=64),
                     st.just(encode_batch([])),
                     st.builds(lambda b, i, x: b[:i] + bytes([x]) + b[i + 1:],
                               st.just(REAL_BATCH), st.integers(0, len(REAL_BATCH) - 1),
                               st.integers(0, 255)))


@given(head=heads, payload=payloads)
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@pytest.mark.slow
def test_signed_fuzzed_pushes_get_a_4xx_or_a_signed_200(registered: Registered, head: Any,
                                                        payload: bytes) -> None:
    body = json.dumps(head).encode() + b"\n" + payload
    headers = registered.sign(body)
    reply = CLIENT.post(batch_path(DEVICE), content=body, headers=headers)
    assert reply.status_code in (200, 400, 409, 422), reply.text
    if reply.status_code == 200:
        expected = signing.sign_answer(registered.key, headers["X-DeskPulse-Nonce"],
                                       reply.content)
        assert reply.headers["x-deskpulse-signature"] == expected
    else:
        assert set(reply.json()) == {"error"}


def test_the_fuzzed_batch_is_a_real_one(registered: Registered) -> None:
    """Unchanged, the batch that the fuzzing mutates is stored: the mutations start from
    something the server accepts, so they probe the parser beyond its first check."""
    head = {"status": {}, "anchors": [], "boot": 1, "uptime_s": 10}
    body = json.dumps(head).encode() + b"\n" + REAL_BATCH
    with TestClient(registered.app) as client:
        reply = client.post(batch_path(DEVICE), content=body, headers=registered.sign(body))
    assert reply.status_code == 200, reply.text
    assert reply.json()["acked"] == 3
