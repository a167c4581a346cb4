"""Tokens and the admin credential (pure: no service)."""

from __future__ import annotations

import time

import jwt
import pytest

from llmchat.auth import (
    AuthError,
    TokenSigner,
    bearer,
    is_admin_credential,
    token_from_subprotocols,
)

KEY = "k" * 40


def test_issued_token_names_its_user_and_expires() -> None:
    signer = TokenSigner(KEY, 600)
    issued = signer.issue("alice")
    identity = signer.verify(issued.token)
    assert identity.user == "alice" and not identity.admin
    assert identity.expires_at == issued.expires_at
    assert 590 <= issued.expires_at - time.time() <= 601


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda: TokenSigner(KEY, 60).issue("bob", now=time.time() - 3600).token, "token_expired"),
        (lambda: TokenSigner("x" * 40, 600).issue("bob").token, "invalid_token"),
        (lambda: "not.a.token", "invalid_token"),
        (lambda: "", "invalid_token"),
        # an unsigned token ("alg": "none") must never be accepted
        (
            lambda: jwt.encode(
                {
                    "sub": "eve",
                    "exp": time.time() + 600,
                    "iat": time.time(),
                    "iss": "llmchat",
                    "aud": "llmchat-chat",
                },
                "",
                algorithm="none",
            ),
            "invalid_token",
        ),
        # right key, but no audience: a token made for something else
        (
            lambda: jwt.encode(
                {"sub": "eve", "exp": time.time() + 600, "iat": time.time(), "iss": "llmchat"},
                KEY,
                algorithm="HS256",
            ),
            "invalid_token",
        ),
        # right key and claims, but a subject that is not a valid display name
        (
            lambda: jwt.encode(
                {
                    "sub": "two words",
                    "exp": time.time() + 600,
                    "iat": time.time(),
                    "iss": "llmchat",
                    "aud": "llmchat-chat",
                },
                KEY,
                algorithm="HS256",
            ),
            "invalid_token",
        ),
    ],
)
def test_bad_tokens_are_refused_with_a_reason(make: object, code: str) -> None:
    assert callable(make)
    with pytest.raises(AuthError) as info:
        TokenSigner(KEY, 600).verify(make())
    assert info.value.code == code


def test_a_tampered_token_is_refused() -> None:
    token = TokenSigner(KEY, 600).issue("alice").token
    head, body, sig = token.split(".")
    forged_body = jwt.utils.base64url_encode(
        jwt.utils.base64url_decode(body).replace(b"alice", b"admin")
    ).decode()
    with pytest.raises(AuthError):
        TokenSigner(KEY, 600).verify(f"{head}.{forged_body}.{sig}")


def test_short_signing_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        TokenSigner("short", 600)


def test_admin_credential_is_compared_exactly() -> None:
    admin = "a" * 30
    assert is_admin_credential(admin, admin)
    assert not is_admin_credential(admin[:-1], admin)
    assert not is_admin_credential(admin + "x", admin)
    assert not is_admin_credential(admin, None)
    assert not is_admin_credential("", "")


def test_bearer_and_subprotocol_parsing() -> None:
    assert bearer("Bearer abc") == "abc"
    assert bearer("bearer  abc ") == "abc"
    assert bearer("Basic abc") is None
    assert bearer("Bearer ") is None
    assert bearer(None) is None
    assert token_from_subprotocols(["llmchat.v1", "bearer.xyz"]) == "xyz"
    assert token_from_subprotocols(["llmchat.v1"]) is None
    assert token_from_subprotocols(["bearer."]) is None
