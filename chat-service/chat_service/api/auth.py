"""Signing in: open sign-up for a free name, tokens issued by the admin, refresh, sign out,
who am I; and the admin deleting a user."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from chat_service import metrics
from chat_service.state import ServiceState
from llmchat.auth import IssuedToken
from llmchat.models import DisplayName
from llmchat.users import User

from .deps import AdminDep, IdentityDep, StateDep, UserDep
from .errors import ApiError, responses

router = APIRouter(prefix="/auth", tags=["auth"])
users_router = APIRouter(prefix="/users", tags=["auth"])


class SignUp(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: DisplayName = Field(description="The name to take (unique, case-insensitive).")


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: DisplayName = Field(description="Whose token: registered first if the name is free.")
    ttl_seconds: int | None = Field(
        default=None, ge=60, le=30 * 86400, description="Validity (default: the service's)."
    )


class TokenOut(BaseModel):
    token: str = Field(description="Send as 'Authorization: Bearer <token>'. Keep it secret.")
    user: str
    expires_at: float = Field(description="Expiry, seconds since the epoch.")


class Me(BaseModel):
    user: str | None = Field(description="Your name (None for the admin credential).")
    admin: bool
    expires_at: float | None


def _out(issued: IssuedToken) -> TokenOut:
    return TokenOut(token=issued.token, user=issued.user, expires_at=issued.expires_at)


async def _issue(state: ServiceState, user: User, ttl_seconds: int | None = None) -> IssuedToken:
    """A token starting a new sign-in for ``user`` (their registration and token version)."""
    standing = await state.users.standing(user.name)
    now = time.time()
    return state.signer.issue(
        user.name,
        ttl_seconds,
        now,
        uid=user.uid,
        version=standing.version,
        not_after=now + state.settings.max_session_seconds,
    )


async def _register(state: ServiceState, name: str) -> tuple[User, bool]:
    """Claim ``name`` (see UserStore.register); a reserved name, or one that looks like a taken
    or reserved one (its confusable skeleton), is 409 ``name_taken``."""
    try:
        return await state.users.register(name)
    except ValueError as exc:
        raise ApiError(409, "name_taken", str(exc)) from exc


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post(
    "/signup",
    response_model=TokenOut,
    status_code=status.HTTP_201_CREATED,
    responses=responses(403, 409, 422, 429, 503),
    summary="Take a free name and get a token for it",
)
async def sign_up(body: SignUp, state: StateDep, request: Request) -> TokenOut:
    if not state.settings.open_signup:
        raise ApiError(403, "signup_closed", "sign-up is closed: ask an admin for a token")
    await state.limiter.check("signup", _client_address(request), state.settings.signup_limit)
    user, created = await _register(state, body.name)
    if not created:
        raise ApiError(
            409,
            "name_taken",
            f"name {body.name!r} is taken: choose another, or sign in with its token",
        )
    metrics.AUTH.labels("signup").inc()
    return _out(await _issue(state, user))


@router.post(
    "/tokens",
    response_model=TokenOut,
    status_code=status.HTTP_201_CREATED,
    responses=responses(401, 403, 409, 422, 503),
    summary="Issue a token for any name (admin)",
)
async def issue_token(body: TokenRequest, state: StateDep, _: AdminDep) -> TokenOut:
    user, _created = await _register(state, body.name)
    metrics.AUTH.labels("issued").inc()
    return _out(await _issue(state, user, body.ttl_seconds))


@router.post(
    "/refresh",
    response_model=TokenOut,
    responses=responses(401, 403),
    summary="Exchange a valid token for a fresh one (within the sign-in's longest life)",
    description="The fresh token continues the same sign-in: however often it is refreshed, "
    "no token of it lives past `LLMCHAT_MAX_SESSION_SECONDS` (default 30 days) from the "
    "sign-in; then refresh answers 401 `session_ended` and a new token is needed.",
)
async def refresh(identity: IdentityDep, _: UserDep, state: StateDep) -> TokenOut:
    assert identity.user is not None
    now = time.time()
    start = identity.session_start if identity.session_start is not None else now
    end = start + state.settings.max_session_seconds
    if end - now < 60:
        raise ApiError(
            401,
            "session_ended",
            "this sign-in is older than the longest a sign-in may last "
            f"({state.settings.max_session_seconds} s); get a new token (sign-up, or the admin)",
            {"WWW-Authenticate": "Bearer"},
        )
    metrics.AUTH.labels("refreshed").inc()
    issued = state.signer.issue(
        identity.user,
        now=now,
        uid=identity.uid,
        version=identity.version,
        session_start=start,
        not_after=end,
    )
    return _out(issued)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(401, 403),
    summary="Sign out everywhere: every token of yours stops working, open sockets close",
    description="Your token version moves on, so every token issued to you so far is refused "
    "from now on (and open WebSockets are closed within `LLMCHAT_WS_AUTH_RECHECK_S`). The name "
    "stays registered: without a token, only the admin can issue you a new one.",
)
async def logout(user: UserDep, state: StateDep) -> Response:
    await state.users.sign_out(user)
    metrics.AUTH.labels("signed_out").inc()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", response_model=Me, responses=responses(401), summary="Who the token names")
async def me(identity: IdentityDep) -> Me:
    return Me(user=identity.user, admin=identity.admin, expires_at=identity.expires_at)


@users_router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(401, 403, 404, 503),
    summary="Delete a user (admin): their tokens, memberships and invitations end",
    description="The name becomes free; whoever takes it next is a new user, whom no earlier "
    "token names and who is in no room.",
)
async def delete_user(
    name: Annotated[str, Path(min_length=1, max_length=40)], state: StateDep, _: AdminDep
) -> Response:
    if not await state.users.delete(name):
        raise ApiError(404, "user_not_found", f"nobody has signed up as {name!r}")
    metrics.AUTH.labels("deleted").inc()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
