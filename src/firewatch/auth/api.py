"""HTTP routes for identity: login/refresh/logout, JWKS, users, integration keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from firewatch.auth import service
from firewatch.auth.dependencies import auth_state, current_principal, request_client
from firewatch.auth.principal import Principal
from firewatch.auth.rbac import INTEGRATION_SCOPES, Permission, Role, permissions_of, require
from firewatch.errors import RateLimitedError, UnauthorizedError
from firewatch.http import deps
from firewatch.http.pagination import decode_cursor, encode_cursor
from firewatch.http.responses import JSONResponse
from firewatch.http.validation import LookupName
from firewatch.observability import metrics
from firewatch.runtime.database import PgPool

router = APIRouter(tags=["auth"])

Pool = Annotated[PgPool, Depends(deps.pool)]
Authenticated = Annotated[Principal, Depends(current_principal)]
UsersAdmin = Annotated[Principal, require(Permission.USERS_ADMIN)]
KeysAdmin = Annotated[Principal, require(Permission.INTEGRATIONS_ADMIN)]

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

Password = Annotated[str, Field(min_length=1, max_length=1024)]


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: LookupName
    password: Password


class RefreshIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: Annotated[str, Field(min_length=1, max_length=200)]


class LogoutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: Annotated[str | None, Field(max_length=200)] = None


class SessionOut(BaseModel):
    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - the OAuth token type name, not a secret
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


class MeOut(BaseModel):
    subject: str
    kind: str
    role: str
    permissions: list[str]


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Annotated[str, Field(min_length=1, max_length=64)]
    role: Role
    password: Password


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    disabled: bool | None = None


class PasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: Password | None = Field(
        default=None, description="The new password; omitted: a random one is returned once."
    )


class UserOut(BaseModel):
    username: str
    role: Role
    disabled: bool
    locked_until: datetime | None
    created_at: datetime
    updated_at: datetime
    password_changed_at: datetime
    last_login_at: datetime | None


class UserPage(BaseModel):
    items: list[UserOut]
    next_cursor: str | None


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=64)]
    scopes: Annotated[list[str], Field(min_length=1, max_length=len(INTEGRATION_SCOPES))]


class ApiKeyOut(BaseModel):
    id: str
    name: str
    scopes: list[str]
    created_by: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The key, shown this once: store it in the integration.")


def _key_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["key_id"],
        "name": row["name"],
        "scopes": list(row["scopes"]),
        "created_by": row["created_by"],
        "created_at": row["created_at"],
        "last_used_at": row["last_used_at"],
        "revoked_at": row["revoked_at"],
    }


# --- sessions -------------------------------------------------------------------------


@router.get("/.well-known/jwks.json", summary="Public keys that verify access tokens")
async def jwks(request: Request) -> Response:
    return JSONResponse(
        auth_state(request).tokens.keys.jwks(), headers={"Cache-Control": "max-age=60"}
    )


@router.post("/api/v1/auth/login", response_model=SessionOut, summary="Log in")
async def login(body: LoginIn, request: Request, pool: Pool) -> Response:
    try:
        session = await service.login(
            pool, auth_state(request), body.username, body.password, request_client(request)
        )
    except UnauthorizedError:
        metrics.record_auth_failure("invalid_credentials")
        raise
    except RateLimitedError:  # too many attempts, or the account name is locked
        metrics.record_auth_failure("rate_limited")
        raise
    return JSONResponse(session.as_json(), headers=NO_STORE)


@router.post(
    "/api/v1/auth/refresh",
    response_model=SessionOut,
    summary="Exchange a refresh token (rotated: each works once)",
)
async def refresh(body: RefreshIn, request: Request, pool: Pool) -> Response:
    session = await service.refresh(
        pool, auth_state(request), body.refresh_token, request_client(request)
    )
    return JSONResponse(session.as_json(), headers=NO_STORE)


@router.post(
    "/api/v1/auth/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End this login (access token denylisted, refresh family revoked)",
)
async def logout(
    request: Request, caller: Authenticated, pool: Pool, body: LogoutIn | None = None
) -> Response:
    await service.logout(pool, auth_state(request), caller, body.refresh_token if body else None)
    return Response(status_code=204, headers=NO_STORE)


@router.get("/api/v1/auth/me", response_model=MeOut, summary="Who am I, and what may I do")
async def me(caller: Authenticated) -> Response:
    return JSONResponse(
        {
            "subject": caller.subject,
            "kind": caller.kind,
            "role": caller.role,
            "permissions": sorted(p.value for p in permissions_of(caller)),
        }
    )


# --- users --------------------------------------------------------------------------------


@router.get("/api/v1/users", response_model=UserPage, summary="List users", tags=["users"])
async def list_users(
    caller: UsersAdmin,
    pool: Pool,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Response:
    after = decode_cursor(cursor) if cursor else 0
    rows = await service.list_users(pool, after_id=after, limit=limit)
    nxt = encode_cursor(rows[-1]["id"]) if len(rows) == limit else None
    return JSONResponse({"items": [service.user_json(r) for r in rows], "next_cursor": nxt})


@router.post(
    "/api/v1/users",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    summary="Create a user",
    tags=["users"],
)
async def create_user(body: UserIn, request: Request, caller: UsersAdmin, pool: Pool) -> Response:
    row = await service.create_user(
        pool, auth_state(request).hasher, caller, body.username, body.role, body.password
    )
    return JSONResponse(service.user_json(row), status_code=201)


@router.get("/api/v1/users/{username}", response_model=UserOut, tags=["users"])
async def get_user(username: LookupName, caller: UsersAdmin, pool: Pool) -> Response:
    return JSONResponse(service.user_json(await service.get_user(pool, username)))


@router.patch(
    "/api/v1/users/{username}",
    response_model=UserOut,
    summary="Change role or disable (existing tokens stop working at once)",
    tags=["users"],
)
async def patch_user(
    username: LookupName, body: UserPatch, request: Request, caller: UsersAdmin, pool: Pool
) -> Response:
    row = await service.update_user(
        pool, auth_state(request), caller, username, role=body.role, disabled=body.disabled
    )
    return JSONResponse(service.user_json(row))


@router.post(
    "/api/v1/users/{username}/password",
    summary="Reset a password (ends the user's sessions)",
    tags=["users"],
)
async def reset_password(
    username: LookupName, body: PasswordIn, request: Request, caller: UsersAdmin, pool: Pool
) -> Response:
    row, password = await service.reset_password(
        pool, auth_state(request), caller, username, body.password
    )
    out = service.user_json(row)
    if body.password is None:
        out["password"] = password
    return JSONResponse(out, headers=NO_STORE)


# --- integration keys ------------------------------------------------------------------


@router.get("/api/v1/integrations/keys", response_model=list[ApiKeyOut], tags=["integrations"])
async def list_keys(caller: KeysAdmin, pool: Pool) -> Response:
    return JSONResponse([_key_json(r) for r in await service.list_api_keys(pool)])


@router.post(
    "/api/v1/integrations/keys",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    summary="Create an integration key (shown once)",
    tags=["integrations"],
)
async def create_key(body: ApiKeyIn, caller: KeysAdmin, pool: Pool) -> Response:
    row, key = await service.create_api_key(pool, caller, body.name, body.scopes)
    return JSONResponse({**_key_json(row), "key": key}, status_code=201, headers=NO_STORE)


@router.delete(
    "/api/v1/integrations/keys/{key_id}",
    response_model=ApiKeyOut,
    summary="Revoke an integration key",
    tags=["integrations"],
)
async def revoke_key(key_id: LookupName, caller: KeysAdmin, pool: Pool) -> Response:
    return JSONResponse(_key_json(await service.revoke_api_key(pool, caller, key_id)))
