"""Property-based fuzzing of the REST API from its own OpenAPI document (schemathesis).

Every operation in ``/openapi.json`` gets positive and negative cases generated from its schema
(room paths are pinned to an existing room for a share of the cases, so the member-only routes
are exercised past the 404), sent to a real chat-service on a real Redis as three callers: a
user who has joined ``lobby``, the admin credential, and nobody. The assertion: no 5xx anywhere,
and every response's status code, content type and body conform to what the document declares.

The ``(method path, status)`` counts are printed (``-s``) and written to the test's tmp dir as
``schemathesis-<caller>.json`` (the "inputs tried and what each got").
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.auth import admin_headers, headers
from tests.support.procs import ChatService

#: Cases per operation and caller (positive and negative, each with and without the room pinned
#: to ``lobby``): 17 operations x up to 40 x 3 callers, about 1,700 requests (hypothesis stops
#: early on operations with little to vary, such as ``GET /healthz``).
MAX_EXAMPLES = 40
MEMBER = "fuzzer"
ROOM = "lobby"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _callers() -> dict[str, dict[str, str]]:
    return {"member": headers(MEMBER), "admin": admin_headers(), "anonymous": {}}


def _prepare(svc: ChatService) -> None:
    r = httpx.post(svc.url + "/api/v1/rooms", json={"name": ROOM}, headers=admin_headers())
    assert r.status_code == 201, r.text
    r = httpx.post(f"{svc.url}/api/v1/rooms/{ROOM}/members", headers=headers(MEMBER))
    assert r.status_code in (200, 201), r.text
    r = httpx.post(
        f"{svc.url}/api/v1/rooms/{ROOM}/messages",
        json={"text": "seed message", "id": "seed"},
        headers=headers(MEMBER),
    )
    assert r.status_code == 201, r.text


def _short(text: str, limit: int = 600) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


@pytest.mark.slow  # about 50 s for the three callers
@pytest.mark.parametrize("caller", ["member", "admin", "anonymous"])
def test_every_operation_conforms_and_never_fails(
    chat_service: ChatService, caller: str, tmp_path: Path
) -> None:
    _prepare(chat_service)
    auth = _callers()[caller]
    schema = schemathesis.openapi.from_url(chat_service.url + "/openapi.json")
    seen: Counter[tuple[str, int]] = Counter()
    failures: list[dict[str, Any]] = []
    started = time.monotonic()

    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()  # the document itself must load cleanly
        operations.append(result.ok())
    assert len(operations) >= 15, [op.label for op in operations]
    for operation in operations:
        modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
        strategies = [operation.as_strategy(generation_mode=mode) for mode in modes]
        if "{room}" in operation.path:
            strategies += [
                operation.as_strategy(generation_mode=mode, path_parameters={"room": ROOM})
                for mode in modes
            ]

        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=st.one_of(strategies))
        def exercise(case: Case[Any]) -> None:
            response = case.call(base_url=chat_service.url, headers=auth, timeout=10)
            seen[(case.operation.label, response.status_code)] += 1
            try:
                case.validate_response(response, checks=CHECKS, headers=auth)
            except AssertionError as exc:  # a schemathesis Failure (or a group of them)
                failures.append(
                    {
                        "operation": case.operation.label,
                        "status": response.status_code,
                        "failure": _short(str(exc)),
                        "request": _short(case.as_curl_command(headers=auth)),
                        "response": _short(response.text),
                    }
                )
            except BaseExceptionGroup as group:  # schemathesis FailureGroup
                failures.append(
                    {
                        "operation": case.operation.label,
                        "status": response.status_code,
                        "failure": _short("; ".join(str(e) for e in group.exceptions)),
                        "request": _short(case.as_curl_command(headers=auth)),
                        "response": _short(response.text),
                    }
                )

        exercise()

    elapsed = time.monotonic() - started
    report = {
        "caller": caller,
        "requests": sum(seen.values()),
        "seconds": round(elapsed, 1),
        "statuses": {f"{label} -> {status}": n for (label, status), n in sorted(seen.items())},
        "failures": failures,
    }
    (tmp_path / f"schemathesis-{caller}.json").write_text(json.dumps(report, indent=2))
    print(f"\nschemathesis as {caller}: {report['requests']} requests in {elapsed:.1f}s")
    for (label, status), n in sorted(seen.items()):
        print(f"  {label:45} {status}: {n}")
    for failure in failures[:10]:
        print(f"  FAILURE {failure['operation']} {failure['status']}: {failure['failure']}")

    assert not any(status >= 500 for _, status in seen), report["statuses"]
    assert not failures, json.dumps(failures[:5], indent=2)
    ready = httpx.get(chat_service.url + "/readyz")
    assert ready.status_code == 200, ready.text


MESSAGES = "/api/v1/rooms/{room}/messages"
LONG_TEXT = "x" * 8193


@pytest.mark.parametrize(
    ("caller", "label", "query", "body", "expected"),
    [
        pytest.param("member", f"GET {MESSAGES}", {"after": "0"}, None, 200, id="cursor-0"),
        pytest.param("member", f"GET {MESSAGES}", {"after": "0-0 "}, None, 400, id="cursor-space"),
        pytest.param(
            "member",
            f"GET {MESSAGES}",
            {"after": "0-0\n"},
            None,
            400,
            id="cursor-newline",
        ),
        pytest.param(
            "member",
            f"GET {MESSAGES}",
            {"after": f"{2**64}-0"},
            None,
            400,
            id="cursor-2**64",
        ),
        pytest.param(
            "member",
            f"GET {MESSAGES}",
            {"after": f"{2**64 - 1}-{2**64 - 1}"},
            None,
            200,
            id="cursor-max",
        ),
        pytest.param("member", f"GET {MESSAGES}", {"limit": 0}, None, 422, id="limit-0"),
        pytest.param("member", f"GET {MESSAGES}", {"limit": 10_001}, None, 422, id="limit-big"),
        pytest.param("member", f"POST {MESSAGES}", None, {"text": "a\x00b"}, 201, id="text-nul"),
        pytest.param("member", f"POST {MESSAGES}", None, {"text": " \n\t"}, 422, id="text-blank"),
        pytest.param("member", f"POST {MESSAGES}", None, {"text": LONG_TEXT}, 413, id="text-8193"),
        pytest.param(
            "member", f"POST {MESSAGES}", None, {"text": "x" * 40_000}, 413, id="body-40k"
        ),
        pytest.param("member", f"POST {MESSAGES}", None, b"\xffD", 400, id="body-not-utf8"),
        pytest.param(
            "member",
            f"POST {MESSAGES}",
            None,
            {"text": "hi", "author": "mallory"},
            403,
            id="author-other",
        ),
        pytest.param(
            "member",
            f"POST {MESSAGES}",
            None,
            {"text": "a\ud800"},
            422,
            id="text-lone-surrogate",
        ),
        pytest.param(
            "member",
            f"POST {MESSAGES}",
            None,
            {"text": "hi", "id": "abc\n"},
            422,
            id="msg-id-newline",
        ),
        pytest.param(
            "admin",
            "POST /api/v1/rooms",
            None,
            {"name": "room2\n"},
            422,
            id="room-name-newline",
        ),
    ],
)
def test_edge_inputs_get_documented_answers(
    chat_service: ChatService,
    caller: str,
    label: str,
    query: dict[str, Any] | None,
    body: Any,
    expected: int,
) -> None:
    """Hand-picked inputs the generator rarely reaches, through the same schemathesis checks."""
    _prepare(chat_service)
    auth = _callers()[caller]
    schema = schemathesis.openapi.from_url(chat_service.url + "/openapi.json")
    operation = schema.find_operation_by_label(label)
    assert operation is not None, label
    extra: dict[str, Any] = {} if body is None else {"body": body, "media_type": "application/json"}
    case = operation.Case(
        path_parameters={"room": ROOM} if "{room}" in operation.path else None,
        query=query,
        **extra,
    )
    response = case.call(base_url=chat_service.url, headers=auth, timeout=10)
    assert response.status_code == expected, response.text[:300]
    case.validate_response(response, checks=CHECKS, headers=auth)
