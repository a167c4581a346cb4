"""Credentials for tests: every test chat-service shares these keys (see ``procs.ChatService``).

Tokens are minted with the same signer the service uses (a real HS256 token the service
verifies); ``ADMIN_TOKEN`` is the service's admin credential. A token names a registration
and its token version, which the service checks on every use: so ``token(name)`` first
registers ``name`` (if free) in every redis-server the tests are running, and signs what is
stored there.
"""

from __future__ import annotations

import hashlib
import time

import redis
import redis.exceptions

from llmchat import keys
from llmchat.auth import IssuedToken, TokenSigner, authorization
from llmchat.names import skeletons
from llmchat.redis_conn import detect_cluster
from llmchat.users import User

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

#: The redis-servers the tests have running (``procs.RedisServer`` keeps this up to date).
LIVE_REDIS: list[str] = []


def _test_uid(name: str) -> str:
    """The registration id a name gets when these helpers register it (the same on every
    server, so one token fits all of them)."""
    return "t" + hashlib.sha256(name.casefold().encode()).hexdigest()[:15]


def _registration(name: str) -> tuple[str, int]:
    """Register ``name`` where it is free; (its registration id, its token version). A name
    someone signed up through the API keeps that registration, which the token then names."""
    ours = _test_uid(name)
    uid, version = ours, 0
    for url in list(LIVE_REDIS):
        try:
            clustered = detect_cluster(url)
            client: redis.Redis = (
                redis.RedisCluster.from_url(url, decode_responses=True, socket_timeout=5)  # type: ignore[assignment]
                if clustered
                else redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)
            )
            with client:
                record = User(name=name, created_at=time.time(), uid=ours)
                users = keys.users(clustered)
                client.hsetnx(users, name.casefold(), record.model_dump_json())
                for key in skeletons(name):
                    client.hsetnx(keys.user_skeletons(clustered), key, name.casefold())
                stored = User.model_validate_json(str(client.hget(users, name.casefold())))
                version_key = keys.user_versions(clustered)
                here = int(str(client.hget(version_key, name.casefold()) or 0))
        except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.RedisClusterException):
            continue  # a server the test has stopped or paused: nothing to register there
        if stored.uid != ours or uid == ours:
            uid, version = stored.uid, here
    return uid, version


def issued(
    name: str,
    ttl_seconds: int = 3600,
    now: float | None = None,
    session_start: float | None = None,
) -> IssuedToken:
    """A token for ``name`` the test services accept (registered first), with its expiry;
    ``session_start``: when its sign-in began (default: now)."""
    uid, version = _registration(name)
    signer = TokenSigner(TOKEN_SECRET, ttl_seconds)
    return signer.issue(name, now=now, uid=uid, version=version, session_start=session_start)


def token(name: str, ttl_seconds: int = 3600) -> str:
    """A valid token for ``name`` (one hour unless said otherwise)."""
    return issued(name, ttl_seconds).token


def headers(name: str) -> dict[str, str]:
    """``Authorization`` header for user ``name``."""
    return authorization(token(name))


def admin_headers() -> dict[str, str]:
    return authorization(ADMIN_TOKEN)
