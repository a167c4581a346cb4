"""The keys a locally started system shares: the token signing key and the admin credential.

``llmchat up`` keeps them in a file only its user can read, so tokens handed out survive a
restart; benchmarks make fresh ones per run.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import redis

from llmchat.auth import TokenSigner
from llmchat.redis_conn import detect_cluster
from llmchat.users import ensure_users


@dataclass(frozen=True)
class LocalCredentials:
    token_secret: str
    admin_token: str

    @classmethod
    def generate(cls) -> LocalCredentials:
        return cls(secrets.token_urlsafe(48), secrets.token_urlsafe(32))

    @classmethod
    def load_or_create(cls, path: Path) -> LocalCredentials:
        """Read the keys from ``path``, or make them and write it with mode 0600."""
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(str(data["token_secret"]), str(data["admin_token"]))
        creds = cls.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"token_secret": creds.token_secret, "admin_token": creds.admin_token}, out)
        return creds

    def env(self) -> dict[str, str]:
        """Environment for chat-service replicas."""
        return {"LLMCHAT_TOKEN_SECRET": self.token_secret, "LLMCHAT_ADMIN_TOKEN": self.admin_token}

    def token(self, name: str, ttl_seconds: int = 3600, *, redis_url: str) -> str:
        """A user token the replicas accept (for benchmarks and tools run next to them): the
        name is registered in the system's Redis if it is free, and the token names that
        registration and its token version, as the service's own tokens do."""
        return self.tokens(redis_url, [name], ttl_seconds)[name]

    def tokens(self, redis_url: str, names: list[str], ttl_seconds: int = 3600) -> dict[str, str]:
        """``token`` for many names at once (one pipeline each way)."""
        signer = TokenSigner(self.token_secret, ttl_seconds)
        client: redis.Redis | redis.RedisCluster = (
            redis.RedisCluster.from_url(redis_url, decode_responses=True)
            if detect_cluster(redis_url)
            else redis.Redis.from_url(redis_url, decode_responses=True)
        )
        with client:
            users = ensure_users(client, names)
        return {
            name: signer.issue(user.name, uid=user.uid, version=version).token
            for name, (user, version) in users.items()
        }


#: Limits off, for load generators that must not be throttled (the benchmarks say so).
UNLIMITED_ENV = {
    "LLMCHAT_USER_MESSAGES_PER_MINUTE": "0",
    "LLMCHAT_ROOM_MESSAGES_PER_MINUTE": "0",
    "LLMCHAT_SIGNUPS_PER_MINUTE": "0",
    "LLMCHAT_MAX_CONNECTIONS_PER_USER": "0",
}
