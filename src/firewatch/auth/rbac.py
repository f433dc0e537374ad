"""Who may do what: the one permission matrix every route is checked against.

Routes declare the permission they need with
``Annotated[Principal, require(Permission.X)]``; ``require`` authenticates as
:data:`firewatch.auth.dependencies.current_principal` does and then consults
:data:`ROLE_PERMISSIONS` (people) or the key's scopes (integrations). Nothing else
grants access. ``tests/auth/test_rbac.py`` walks every route of the application against
this matrix.
"""

from enum import StrEnum
from typing import Any

from fastapi import Request, Security

from firewatch.auth.dependencies import BearerScheme, authenticate, record_auth_failure
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


class _Requirement(BearerScheme):
    """The bearer scheme of one permission: authenticates, then checks the matrix.

    One dependency per route instead of a permission check depending on
    ``current_principal``: FastAPI solves each level of a dependency tree with its own
    recursive call, and every /api/v1 request pays it. It is the same ``bearer``
    scheme in the OpenAPI document as ``current_principal``, with the permission as
    the route's scope.
    """

    def __init__(self, permission: Permission) -> None:
        super().__init__()
        self.permission = permission

    async def __call__(self, request: Request) -> Principal:
        principal = await authenticate(request)
        if not is_allowed(principal, self.permission):
            record_auth_failure("forbidden")
            raise ForbiddenError(f"this action needs the {self.permission.value} permission")
        return principal


_REQUIRES = {p: Security(_Requirement(p), scopes=[p.value]) for p in Permission}


def require(permission: Permission) -> Any:
    """A FastAPI parameter: the authenticated principal, if it holds ``permission``.

    Use as ``Annotated[Principal, require(Permission.X)]``. 401 when the request is not
    authenticated, 403 when the principal lacks the permission.
    """
    return _REQUIRES[permission]
