"""The caller of a request, as every service sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    """Roles of people; what each may do is in rbac.ROLE_PERMISSIONS."""

    ADMIN = "admin"
    RESPONDER = "responder"
    VIEWER = "viewer"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``subject`` is what timelines and audit records name.

    ``kind`` is "user" (a person, JWT), "integration" (an API key) or "system" (the
    CLI and internal jobs). Users carry a ``role``; integrations carry ``scopes``.
    ``client`` is the caller's address pseudonymised with the audit HMAC key (never
    the address itself), so services can write it into audit records.
    """

    subject: str
    kind: str
    role: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    client: str | None = None
    token_id: str | None = None  # JWT jti, or the API key id
    session_id: str | None = None  # refresh family of the login behind a JWT
    expires_at: int | None = None  # JWT exp (epoch seconds)


SYSTEM = Principal(subject="system", kind="system", role="admin")
