"""Credentials for tests: every test chat-service shares these keys (see ``procs.ChatService``).

Tokens are minted with the same signer the service uses (a real HS256 token the service
verifies); ``ADMIN_TOKEN`` is the service's admin credential.
"""

from __future__ import annotations

from functools import cache

from llmchat.auth import TokenSigner, authorization

TOKEN_SECRET = "test-signing-key-0123456789abcdef-0123456789"
ADMIN_TOKEN = "test-admin-credential-0123456789"

#: What a test chat-service runs with: the keys above, and no rate or connection limits (the
#: security tests set their own limits; functional tests and benches must not be throttled).
AUTH_ENV = {
    "LLMCHAT_TOKEN_SECRET": TOKEN_SECRET,
    "LLMCHAT_ADMIN_TOKEN": ADMIN_TOKEN,
    "LLMCHAT_USER_MESSAGES_PER_MINUTE": "0",
    "LLMCHAT_ROOM_MESSAGES_PER_MINUTE": "0",
    "LLMCHAT_SIGNUPS_PER_MINUTE": "0",
    "LLMCHAT_MAX_CONNECTIONS_PER_USER": "0",
}


@cache
def token(name: str) -> str:
    """A valid token for ``name`` (one hour)."""
    return TokenSigner(TOKEN_SECRET, 3600).issue(name).token


def headers(name: str) -> dict[str, str]:
    """``Authorization`` header for user ``name``."""
    return authorization(token(name))


def admin_headers() -> dict[str, str]:
    return authorization(ADMIN_TOKEN)
