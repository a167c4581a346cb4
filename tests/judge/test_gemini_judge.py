"""The Gemini judge through the real google-genai client against a local endpoint that speaks
the Gemini REST shape (scripted verdicts and Gemini's error responses; no key, no network)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from judge.methods import JudgeFailedError
from judge.rubric import Candidate
from judge.scorers import GeminiScorer, ScorerError
from judge.service import score_round

from tests.llmchat.llm.serving import ServerThread

KEY = "judge-test-key-SECRET"


class Script:
    def __init__(self) -> None:
        self.replies: list[tuple[int, Any]] = []
        self.requests: list[dict[str, Any]] = []


def gemini_text(text: str) -> dict[str, Any]:
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": text}]},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
        "modelVersion": "gemini-2.5-flash",
    }


def gemini_error(code: int, status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}


def make_app(script: Script) -> FastAPI:
    app = FastAPI()

    @app.post("/{version}/models/{model}:generateContent")
    async def generate(version: str, model: str, request: Request) -> JSONResponse:
        if request.headers.get("x-goog-api-key") != KEY:
            return JSONResponse(gemini_error(400, "INVALID_ARGUMENT", "API key not valid."), 400)
        script.requests.append(await request.json())
        status, body = script.replies.pop(0)
        return JSONResponse(body, status_code=status)

    return app


@pytest.fixture
def endpoint() -> Iterator[tuple[str, Script]]:
    script = Script()
    with ServerThread(make_app(script)) as srv:
        yield srv.url, script


CANDS = [Candidate("ada", "Paris."), Candidate("bob", "I think it is Lyon, maybe.")]


def good(a: int, b: int) -> tuple[int, Any]:
    verdict = {
        "scores": [{"id": "A", "score": a, "reason": "r"}, {"id": "B", "score": b, "reason": "r"}]
    }
    return 200, gemini_text(json.dumps(verdict))


async def test_structured_verdict_through_google_genai(endpoint: tuple[str, Script]) -> None:
    url, script = endpoint
    script.replies = [good(9, 3), good(4, 8)]
    scorer = GeminiScorer("gemini-2.5-flash", KEY, base_url=url)
    judged = await score_round(
        scorer,
        context="alice: capital of France?",
        candidates=CANDS,
        seed="5-0",
        passes=2,
        retries=2,
    )
    scored, failures = judged.scored, judged.parse_failures
    assert failures == 0
    assert len(script.requests) == 2
    config = script.requests[0]["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert "scores" in json.dumps(config["responseSchema"])
    assert "systemInstruction" in script.requests[0]
    # the second pass presents the candidates in the other order
    first_user = script.requests[0]["contents"][0]["parts"][0]["text"]
    second_user = script.requests[1]["contents"][0]["parts"][0]["text"]
    assert first_user.index("Paris.") != second_user.index("Paris.")
    assert sorted(s.score for s in scored) == [3.5, 8.5]
    assert KEY not in repr(scorer)
    await scorer.close()


async def test_rate_limit_and_server_errors_are_retried(endpoint: tuple[str, Script]) -> None:
    url, script = endpoint
    script.replies = [
        (429, gemini_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded")),
        (503, gemini_error(503, "UNAVAILABLE", "The model is overloaded")),
        good(7, 7),
    ]
    scorer = GeminiScorer("gemini-2.5-flash", KEY, base_url=url)
    judged = await score_round(
        scorer, context="c", candidates=CANDS, seed="1-0", passes=1, retries=1
    )
    scored = judged.scored
    assert [s.score for s in scored] == [7.0, 7.0]
    assert len(script.requests) == 3
    await scorer.close()


async def test_client_errors_fail_the_round_with_a_named_reason(
    endpoint: tuple[str, Script],
) -> None:
    url, script = endpoint
    script.replies = [
        (400, gemini_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument."))
    ]
    scorer = GeminiScorer("gemini-2.5-flash", KEY, base_url=url)
    with pytest.raises(ScorerError, match="400 INVALID_ARGUMENT"):
        await score_round(scorer, context="c", candidates=CANDS, seed="1-0", passes=1, retries=1)
    script.replies = [(429, gemini_error(429, "RESOURCE_EXHAUSTED", "Quota"))] * 3
    with pytest.raises(ScorerError, match="429"):
        await score_round(scorer, context="c", candidates=CANDS, seed="1-0", passes=1, retries=1)
    await scorer.close()


async def test_malformed_gemini_text_is_retried_then_the_round_fails(
    endpoint: tuple[str, Script],
) -> None:
    url, script = endpoint
    script.replies = [
        (200, gemini_text("The first answer is better.")),
        (200, gemini_text('{"scores": [{"id": "A", "score": 12}]}')),
    ]
    scorer = GeminiScorer("gemini-2.5-flash", KEY, base_url=url)
    with pytest.raises(JudgeFailedError) as info:
        await score_round(scorer, context="c", candidates=CANDS, seed="1-0", passes=1, retries=2)
    assert info.value.parse_failures == 2
    await scorer.close()


def test_a_gemini_judge_needs_a_key() -> None:
    with pytest.raises(ScorerError, match="API key"):
        GeminiScorer("gemini-2.5-flash", "")
