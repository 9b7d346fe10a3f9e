"""Who is asking: the authenticated user (or token) with the role and scope in force."""

from __future__ import annotations

from collections.abc import Sequence
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
    # The credential check's row this caller was made from, as text (gis.auth.accounts.CredentialCheck): not
    # part of who the caller is (equality), only how to tell later that its check still finds the same.
    checked_as: str | None = field(default=None, repr=False, compare=False)

    def can(self, permission: Permission) -> bool:
        return allows(self.role, permission)

    @property
    def scoped(self) -> bool:
        return self.role in SCOPED_ROLES


def narrowed_access(
    user_role: Role | str,
    user_scope: Sequence[str],
    token_role: Role | str | None,
    token_scope: Sequence[str] | None,
) -> tuple[Role, tuple[str, ...]] | None:
    """The role and scope a token grants now: its user's *current* role and scope, narrowed by what
    the token was issued with; None when the token no longer fits inside them.

    Evaluated on every request, so a demotion, a move to other grids or a role change applies to
    tokens issued before it. Only an admin may hold a token of another role (admins may narrow to
    any role); once the user no longer holds the token's role, the token is dead.
    """
    user_role = Role(user_role)
    role = Role(token_role) if token_role else user_role
    if role != user_role and user_role is not Role.ADMIN:
        return None
    if role not in SCOPED_ROLES:
        # A grid-limited token cannot narrow a role that has no grid limit: it was issued for a
        # scoped role its user no longer holds.
        return None if token_scope else (role, ())
    if token_scope is None:
        scope = tuple(user_scope) if role == user_role else ()
    elif user_role is Role.ADMIN:
        scope = tuple(token_scope)
    else:
        current = set(user_scope)
        scope = tuple(code for code in token_scope if code in current)
    # An empty scope would not mean "nothing": refuse the token instead of guessing.
    return (role, scope) if scope else None
