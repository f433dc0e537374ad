"""Who may do what: the one permission matrix every route is checked against.

Routes declare the permission they need with ``Depends(require(Permission.X))``;
``require`` authenticates through :func:`firewatch.auth.dependencies.current_principal`
and then consults :data:`ROLE_PERMISSIONS` (people) or the key's scopes
(integrations). Nothing else grants access. ``tests/auth/test_rbac.py`` walks every
route of the application against this matrix.

(No ``from __future__ import annotations`` here: FastAPI must see the per-permission
dependency's annotations as objects, since they close over the permission.)
"""

from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Annotated

from fastapi import Security

from firewatch.auth.dependencies import current_principal
from firewatch.auth.principal import Principal, Role
from firewatch.errors import ForbiddenError

__all__ = ["INTEGRATION_SCOPES", "ROLE_PERMISSIONS", "Permission", "Role", "require"]


class Permission(StrEnum):
    INCIDENTS_READ = "incidents:read"
    INCIDENTS_WRITE = "incidents:write"
    ALERTS_WRITE = "alerts:write"  # ingestion: Alertmanager and webhooks
    SIGNALS_WRITE = "signals:write"  # ingestion: metric signals
    ANALYTICS_READ = "analytics:read"
    MODELS_ADMIN = "models:admin"
    USERS_ADMIN = "users:admin"
    AUDIT_READ = "audit:read"
    INTEGRATIONS_ADMIN = "integrations:admin"


_VIEWER = frozenset({Permission.INCIDENTS_READ, Permission.ANALYTICS_READ})
_RESPONDER = _VIEWER | {Permission.INCIDENTS_WRITE}

# The matrix. Admins hold every permission (they can mint an ingestion key anyway,
# so ingesting directly grants them nothing new).
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: _VIEWER,
    Role.RESPONDER: _RESPONDER,
    Role.ADMIN: frozenset(Permission),
}

# Integration principals (API keys) may only ever hold these; a key's scopes are a
# non-empty subset chosen when it is created.
INTEGRATION_SCOPES: frozenset[Permission] = frozenset(
    {Permission.ALERTS_WRITE, Permission.SIGNALS_WRITE}
)


def permissions_of(principal: Principal) -> frozenset[Permission]:
    if principal.kind == "integration":
        return frozenset(Permission(s) for s in principal.scopes if s in INTEGRATION_SCOPES)
    try:
        return ROLE_PERMISSIONS[Role(principal.role)]
    except ValueError:
        return frozenset()


def is_allowed(principal: Principal, permission: Permission) -> bool:
    return permission in permissions_of(principal)


def _dependency(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    # The permission is declared as a security scope, so every route's requirement is
    # visible in the OpenAPI document (and walked from there by tests/auth/test_rbac.py).
    async def require_permission(
        principal: Annotated[Principal, Security(current_principal, scopes=[permission.value])],
    ) -> Principal:
        if not is_allowed(principal, permission):
            raise ForbiddenError(f"this action needs the {permission.value} permission")
        return principal

    require_permission.__name__ = f"require_{permission.name.lower()}"
    return require_permission


_REQUIRES = {p: _dependency(p) for p in Permission}


def require(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency: the authenticated principal, if it holds ``permission``.

    401 when the request is not authenticated (from ``current_principal``), 403 when
    the principal lacks the permission. One shared dependency per permission.
    """
    return _REQUIRES[permission]
