"""Who is asking: the authenticated user (or token) with the role and scope in force."""

from __future__ import annotations

from dataclasses import dataclass, field

from gis.auth.roles import SCOPED_ROLES, Permission, Role, allows


@dataclass(frozen=True)
class Principal:
    user_id: int
    username: str
    role: Role
    scope_codes: tuple[str, ...] = ()
    via: str = "session"  # session | token | cli
    client_ip: str | None = None
    token_id: int | None = None
    session_id_hash: str | None = field(default=None, repr=False)

    def can(self, permission: Permission) -> bool:
        return allows(self.role, permission)

    @property
    def scoped(self) -> bool:
        return self.role in SCOPED_ROLES
