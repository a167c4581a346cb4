"""Signing in: open sign-up for a free name, tokens issued by the admin, refresh, who am I."""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, ConfigDict, Field

from chat_service import metrics
from chat_service.state import ServiceState
from llmchat.auth import IssuedToken
from llmchat.models import DisplayName
from llmchat.users import User

from .deps import AdminDep, IdentityDep, StateDep, UserDep
from .errors import ApiError, responses

router = APIRouter(prefix="/auth", tags=["auth"])


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


async def _register(state: ServiceState, name: str) -> tuple[User, bool]:
    """Claim ``name`` (see UserStore.register); a reserved name is 409 ``name_taken``."""
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
    return _out(state.signer.issue(user.name))


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
    return _out(state.signer.issue(user.name, body.ttl_seconds))


@router.post(
    "/refresh",
    response_model=TokenOut,
    responses=responses(401, 403),
    summary="Exchange a valid token for a fresh one",
)
async def refresh(user: UserDep, state: StateDep) -> TokenOut:
    metrics.AUTH.labels("refreshed").inc()
    return _out(state.signer.issue(user))


@router.get("/me", response_model=Me, responses=responses(401), summary="Who the token names")
async def me(identity: IdentityDep) -> Me:
    return Me(user=identity.user, admin=identity.admin, expires_at=identity.expires_at)
