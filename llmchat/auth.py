"""Signed, expiring user tokens and the admin credential.

A user token is a JSON Web Token (HS256, via PyJWT) whose subject is the user's display name;
every chat-service replica verifies it with the shared signing key (``LLMCHAT_TOKEN_SECRET``).
It also carries the id of the user's registration (``uid``), the user's token version
(``ver``) and when the sign-in it descends from began (``sst``): chat-service accepts it only
while the user's record has that id and version (see ``llmchat.users``), and refreshes it only
within ``max_session_seconds`` of that start. The admin credential is a separate secret
compared in constant time.
"""

from __future__ import annotations

import hmac
import time
import uuid
from dataclasses import dataclass

import jwt
from pydantic import TypeAdapter, ValidationError

from llmchat.models import DisplayName

ISSUER = "llmchat"
AUDIENCE = "llmchat-chat"
ALGORITHM = "HS256"
MIN_SECRET_CHARS = 32
MIN_ADMIN_CHARS = 24

_NAME: TypeAdapter[str] = TypeAdapter(DisplayName)


class AuthError(Exception):
    """A credential that cannot be accepted; ``code`` names the problem for machines."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Identity:
    """Who is calling: a user (by display name), or the admin (``user`` is None)."""

    user: str | None
    admin: bool = False
    expires_at: float | None = None
    uid: str = ""  # the registration the token names ("" for tokens from before uids)
    version: int = 0  # the user's token version when it was issued
    session_start: float | None = None  # when the sign-in its refresh chain began


@dataclass(frozen=True)
class IssuedToken:
    token: str
    user: str
    expires_at: float


class TokenSigner:
    def __init__(self, secret: str, ttl_seconds: int) -> None:
        if len(secret) < MIN_SECRET_CHARS:
            raise ValueError(
                f"the token signing key must be at least {MIN_SECRET_CHARS} characters"
            )
        self._key = secret.encode("utf-8")
        self.ttl_seconds = ttl_seconds

    def issue(
        self,
        user: str,
        ttl_seconds: int | None = None,
        now: float | None = None,
        *,
        uid: str = "",
        version: int = 0,
        session_start: float | None = None,
        not_after: float | None = None,
    ) -> IssuedToken:
        """A token for ``user`` (registration ``uid``, token ``version``). ``session_start``:
        the refresh chain's start (default: now, a new sign-in); ``not_after``: the token never
        outlives it (the end of the chain)."""
        issued = int(now if now is not None else time.time())
        expires = issued + (ttl_seconds or self.ttl_seconds)
        if not_after is not None:
            expires = min(expires, int(not_after))
        claims = {
            "sub": user,
            "uid": uid,
            "ver": version,
            "sst": int(session_start if session_start is not None else issued),
            "iat": issued,
            "exp": expires,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "jti": uuid.uuid4().hex,
        }
        return IssuedToken(jwt.encode(claims, self._key, algorithm=ALGORITHM), user, float(expires))

    def verify(self, token: str) -> Identity:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["sub", "exp", "iat", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token_expired", "the token has expired; sign in again") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthError("invalid_token", f"the token is not valid: {exc}") from exc
        try:
            user = _NAME.validate_python(claims["sub"])
        except ValidationError as exc:
            raise AuthError("invalid_token", "the token names no valid user") from exc
        uid, version, start = claims.get("uid", ""), claims.get("ver", 0), claims.get("sst")
        if (
            not isinstance(uid, str)
            or not isinstance(version, int)
            or not isinstance(start, int | None)
        ):
            raise AuthError("invalid_token", "the token's claims are malformed")
        return Identity(
            user=user,
            expires_at=float(claims["exp"]),
            uid=uid,
            version=version,
            session_start=float(start if start is not None else claims["iat"]),
        )


def is_admin_credential(presented: str, admin_token: str | None) -> bool:
    """Constant-time check of the admin credential (False when none is configured)."""
    if not admin_token or not presented:
        return False
    return hmac.compare_digest(presented.encode("utf-8"), admin_token.encode("utf-8"))


def authorization(token: str) -> dict[str, str]:
    """The ``Authorization`` header that presents ``token`` (what :func:`bearer` reads)."""
    return {"Authorization": f"Bearer {token}"}


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


#: Browsers cannot set headers on a WebSocket, so the page offers its token as a subprotocol
#: ``bearer.<token>`` next to ``llmchat.v1`` (the service answers with ``llmchat.v1``); the token
#: never appears in a URL, so it is never in an access log.
WS_PROTOCOL = "llmchat.v1"
WS_BEARER_PREFIX = "bearer."


def token_from_subprotocols(protocols: list[str]) -> str | None:
    for proto in protocols:
        if proto.startswith(WS_BEARER_PREFIX):
            return proto[len(WS_BEARER_PREFIX) :] or None
    return None
