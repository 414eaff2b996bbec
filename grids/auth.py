"""Loading the session's user and their active memberships in one statement.

Every logged-in request loads its user (``django.contrib.auth.get_user`` -> ``get_user``), and
nearly every one then resolves the user's scope (``grids.scoping.resolve_scope``: the active
memberships). ``ScopedModelBackend.get_user`` asks both at once: the user row plus its active
memberships as a JSON array, in a statement compiled from the ORM once per process (compiling
``User.objects.get(pk=...)`` cost about as much as running it). The memberships seed the
read-only request's scope cache (``grids.scoping.seed_scope_rows``); a write request (no cache)
or a Membership saved during the request resolves from the database as before, so nothing is
decided from rows older than the request. Authentication itself (passwords, ``is_active``, the
session hash check) is ModelBackend's, unchanged."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.db import connections
from django.utils import timezone

from grids.scoping import membership_sql, seed_scope_rows

_USER_SQL: tuple[str, tuple[str, ...], list[str]] | None = None


def _user_sql() -> tuple[str, tuple[str, ...], list[str]]:
    """(SQL, parameter order, attribute names of the user columns), built once."""
    global _USER_SQL
    if _USER_SQL is None:
        User = get_user_model()
        fields = User._meta.concrete_fields
        columns = ", ".join(f'u."{f.column}"' for f in fields)
        rows_sql, rows_order = membership_sql()
        sql = (
            f"SELECT {columns}, (SELECT coalesce(json_agg(json_build_array(x.branch_id, x.sub_branch_id, "
            f"x.grid_id, x.role)), '[]'::json) FROM ({rows_sql}) x) "
            f'FROM "{User._meta.db_table}" u WHERE u."{User._meta.pk.column}" = %s'
        )
        _USER_SQL = sql, (*rows_order, "user"), [f.attname for f in fields]
    return _USER_SQL


class ScopedModelBackend(ModelBackend):
    def get_user(self, user_id):
        User = get_user_model()
        try:
            user_id = User._meta.pk.to_python(user_id)
        except Exception:  # a session holding something that is no user id: no user
            return None
        sql, order, attnames = _user_sql()
        today = timezone.localdate()
        values = {"user": user_id, "today": today}
        db = User._default_manager.db
        with connections[db].cursor() as cursor:
            cursor.execute(sql, [values[name] for name in order])
            row = cursor.fetchone()
        if row is None:
            return None
        user = User.from_db(db, attnames, row[:-1])
        if not self.user_can_authenticate(user):
            return None
        seed_scope_rows(user.pk, today, [tuple(r) for r in row[-1]])
        return user
