"""管户移交: handing one person's book (merchants, open leads, open tasks) to receivers in one step.

Who may: whoever holds a branch or sub-branch role that may change things (branch manager,
regional head) or a superuser; only what lies within their change scope moves. Grid members
(account managers, grid leaders) and mid-office cannot hand over anybody.

History: Merchant and Lead are tracked by pghistory (the owner change is an event, stamped with
the handover id as context); every moved row is also a HandoverItem (from ``handover.from_user``
to ``to_user``). Activities and stage changes follow the merchant's grid (grids.scoping), so the
receiver, a member of that grid, sees the merchant's whole past."""

from __future__ import annotations

import datetime
from collections import defaultdict
from dataclasses import dataclass, field

import pghistory
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from crm.choices import CLOSED_STAGES, TaskStatus
from crm.models import Handover, HandoverItem, Lead, Merchant, Notification, Task
from grids.choices import GRID_ROLES, Role
from grids.models import Grid, Membership, User
from grids.scoping import UserScope, resolve_scope, scope_q

#: A per-grid assignment larger than this is not a real request.
MAX_GRIDS = 500


@dataclass
class GridBook:
    """The part of a book that lies in one grid (``grid`` None: merchant-less tasks and strays,
    which only a superuser's scope holds)."""

    grid: Grid | None
    merchants: list[Merchant] = field(default_factory=list)
    leads: list[Lead] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)
    #: users holding an active grid role in this grid, other than the leaver
    members: list[User] = field(default_factory=list)

    @property
    def grid_id(self) -> int | None:
        return self.grid.pk if self.grid else None

    @property
    def total(self) -> int:
        return len(self.merchants) + len(self.leads) + len(self.tasks)


@dataclass
class HandoverBook:
    """What ``from_user`` owns within ``by``'s change scope, grouped by grid."""

    from_user: User
    grids: list[GridBook]
    #: the leaver's active or future grid memberships within the scope (ended when applying)
    memberships: list[Membership]

    @property
    def merchant_count(self) -> int:
        return sum(len(g.merchants) for g in self.grids)

    @property
    def lead_count(self) -> int:
        return sum(len(g.leads) for g in self.grids)

    @property
    def task_count(self) -> int:
        return sum(len(g.tasks) for g in self.grids)

    @property
    def empty(self) -> bool:
        return not self.grids


# -- who may, and whom ---------------------------------------------------------------------------


def handover_scope(*, by) -> UserScope:
    """``by``'s change scope, refusing (403) anyone who holds no branch or sub-branch role that may
    change: a grid member manages no team, a mid-office analyst reads only."""
    scope = resolve_scope(by, "change")
    if not (scope.everything or scope.branch_ids or scope.sub_branch_ids):
        raise PermissionDenied(_("Only branch managers and regional heads can hand over a book."))
    return scope


def _restricted(model, by, scope: UserScope):
    q = scope_q(model, by, "change", scope=scope)
    return model.objects.all() if q is None else model.objects.filter(q)


def _active_on(day: datetime.date) -> Q:
    return Q(start_date__lte=day) & (Q(end_date__isnull=True) | Q(end_date__gte=day))


def handover_people(*, by, scope: UserScope | None = None):
    """People ``by`` can hand over: users who hold, or held, a grid membership within ``by``'s
    change scope (a leaver whose membership was already ended still owns a book)."""
    scope = scope or handover_scope(by=by)
    memberships = _restricted(Membership, by, scope).filter(grid__isnull=False)
    return User.objects.filter(pk__in=memberships.values("user_id")).order_by("full_name", "username")


def handover_receivers(*, by, scope: UserScope | None = None, exclude=None):
    """People who may receive a book from ``by``: active users holding an active grid membership
    within ``by``'s change scope."""
    scope = scope or handover_scope(by=by)
    today = timezone.localdate()
    memberships = _restricted(Membership, by, scope).filter(_active_on(today), grid__isnull=False)
    users = User.objects.filter(is_active=True, pk__in=memberships.values("user_id"))
    if exclude is not None:
        users = users.exclude(pk=exclude.pk)
    return users.order_by("full_name", "username")


# -- the book ---------------------------------------------------------------------------------------


def _book(*, from_user, by, scope: UserScope, lock: bool = False) -> HandoverBook:
    today = timezone.localdate()
    merchants = _restricted(Merchant, by, scope).filter(owner=from_user)
    leads = _restricted(Lead, by, scope).filter(owner=from_user).exclude(stage__in=CLOSED_STAGES)
    tasks = _restricted(Task, by, scope).filter(owner=from_user, status=TaskStatus.OPEN)
    if lock:
        # The rows moved are the rows checked: a concurrent edit of one of them waits for us.
        merchants, leads, tasks = (qs.select_for_update(of=("self",)) for qs in (merchants, leads, tasks))
    merchants = list(merchants.select_related("grid").order_by("grid_id", "name", "id"))
    leads = list(leads.select_related("merchant__grid").order_by("merchant__grid_id", "merchant__name", "id"))
    tasks = list(tasks.select_related("merchant__grid").order_by("due_at", "id"))

    grids: dict[int | None, GridBook] = {}

    def book_of(grid):
        key = grid.pk if grid else None
        if key not in grids:
            grids[key] = GridBook(grid=grid)
        return grids[key]

    for m in merchants:
        book_of(m.grid).merchants.append(m)
    for lead in leads:
        book_of(lead.merchant.grid).leads.append(lead)
    for t in tasks:
        book_of(t.merchant.grid if t.merchant_id else None).tasks.append(t)

    grid_ids = [k for k in grids if k is not None]
    members = (
        Membership.objects.filter(_active_on(today), grid_id__in=grid_ids, role__in=GRID_ROLES, user__is_active=True)
        .exclude(user=from_user)
        .select_related("user")
        .order_by("user__full_name", "user__username")
    )
    for m in members:
        if m.user not in grids[m.grid_id].members:
            grids[m.grid_id].members.append(m.user)

    held = (
        _restricted(Membership, by, scope)
        .filter(user=from_user, grid__isnull=False)
        .filter(Q(end_date__isnull=True) | Q(end_date__gte=today))
        .select_related("grid")
    )
    ordered = sorted(grids.values(), key=lambda g: (g.grid is None, g.grid.code if g.grid else ""))
    return HandoverBook(from_user=from_user, grids=ordered, memberships=list(held))


def handover_preview(*, from_user, by) -> HandoverBook:
    """What ``from_user`` owns within ``by``'s change scope (merchants they own, their open leads
    and open tasks), grouped by grid, with each grid's possible receivers. Refuses (403) a ``by``
    who cannot hand over, and (400, ``from_user``) a person outside ``by``'s scope."""
    scope = handover_scope(by=by)
    book = _book(from_user=from_user, by=by, scope=scope)
    if book.empty and not book.memberships and not handover_people(by=by, scope=scope).filter(pk=from_user.pk).exists():
        raise ValidationError({"from_user": [_("This person does not work in your scope.")]})
    return book


# -- applying it ----------------------------------------------------------------------------------


def handover_apply(
    *,
    from_user,
    by,
    assignments: User | dict[int | None, User],
    end_memberships: bool = True,
    note: str = "",
) -> Handover:
    """Hand ``from_user``'s book (within ``by``'s change scope) over, in one transaction.

    ``assignments`` is one receiver for everything, or ``{grid_id: receiver}`` naming a receiver for
    every grid of the book. A receiver must be an active user holding an active grid membership
    within ``by``'s scope; one who is not a member of a grid they receive becomes its account
    manager from today. Owners are changed with one UPDATE per model and receiver; every moved row
    is a HandoverItem. With ``end_memberships`` the leaver's grid memberships within the scope end
    yesterday (a membership that starts today or later is removed: it cannot end before it starts;
    pghistory keeps the deleted row), so they lose access at once. Any refusal leaves nothing
    changed. Errors: PermissionDenied when ``by`` may not hand over; ValidationError naming
    ``from_user``, ``to_user`` or ``by_grid``."""
    scope = handover_scope(by=by)
    today = timezone.localdate()
    now = timezone.now()
    with transaction.atomic():
        book = _book(from_user=from_user, by=by, scope=scope, lock=True)
        if book.empty and not (end_memberships and book.memberships):
            if handover_people(by=by, scope=scope).filter(pk=from_user.pk).exists():
                raise ValidationError({"from_user": [_("This person owns nothing in your scope to hand over.")]})
            raise ValidationError({"from_user": [_("This person does not work in your scope.")]})
        receiver_of = _receivers_by_grid(book=book, by=by, scope=scope, assignments=assignments)

        handover = Handover.objects.create(
            from_user=from_user, by=by, applied_at=now, end_memberships=end_memberships, note=note[:200]
        )
        with pghistory.context(handover=handover.pk):
            moved: dict[int, dict[str, list[int]]] = defaultdict(lambda: {"merchant": [], "lead": [], "task": []})
            for gb in book.grids:
                to = receiver_of[gb.grid_id]
                moved[to.pk]["merchant"] += [m.pk for m in gb.merchants]
                moved[to.pk]["lead"] += [lead.pk for lead in gb.leads]
                moved[to.pk]["task"] += [t.pk for t in gb.tasks]
            items = []
            for to_id, ids in moved.items():
                if ids["merchant"]:
                    Merchant.objects.filter(pk__in=ids["merchant"]).update(owner_id=to_id, updated_at=now)
                if ids["lead"]:
                    Lead.objects.filter(pk__in=ids["lead"]).update(owner_id=to_id)
                if ids["task"]:
                    Task.objects.filter(pk__in=ids["task"]).update(owner_id=to_id)
                    # Reminders about a moved task go with it: the leaver's inbox no longer names a
                    # merchant they gave up, and the receiver sees what is already overdue.
                    Notification.objects.filter(task_id__in=ids["task"]).update(user_id=to_id)
                items += [HandoverItem(handover=handover, merchant_id=pk, to_user_id=to_id) for pk in ids["merchant"]]
                items += [HandoverItem(handover=handover, lead_id=pk, to_user_id=to_id) for pk in ids["lead"]]
                items += [HandoverItem(handover=handover, task_id=pk, to_user_id=to_id) for pk in ids["task"]]
            HandoverItem.objects.bulk_create(items, batch_size=1000)

            # Receivers who are not members of a grid they now hold become its account managers.
            serving = set(
                Membership.objects.filter(
                    _active_on(today),
                    role__in=GRID_ROLES,
                    grid_id__in=[g for g in receiver_of if g is not None],
                    user_id__in={u.pk for u in receiver_of.values()},
                ).values_list("user_id", "grid_id")
            )
            Membership.objects.bulk_create(
                [
                    Membership(user=to, role=Role.ACCOUNT_MANAGER, grid_id=grid_id, start_date=today)
                    for grid_id, to in receiver_of.items()
                    if grid_id is not None and (to.pk, grid_id) not in serving
                ]
            )

            if end_memberships and book.memberships:
                ids = [m.pk for m in book.memberships]
                Membership.objects.filter(pk__in=ids, start_date__lt=today).update(
                    end_date=today - datetime.timedelta(days=1)
                )
                Membership.objects.filter(pk__in=ids, start_date__gte=today).delete()
    return handover


def _receivers_by_grid(*, book: HandoverBook, by, scope: UserScope, assignments) -> dict[int | None, User]:
    """Validate ``assignments`` against the book and ``by``'s scope; {grid_id: receiver}."""
    allowed = handover_receivers(by=by, scope=scope, exclude=book.from_user)
    grid_ids = [g.grid_id for g in book.grids]
    if isinstance(assignments, dict):
        if len(assignments) > MAX_GRIDS:
            raise ValidationError({"by_grid": [_("Too many grids.")]})
        names = {g.grid_id: str(g.grid) if g.grid else _("no grid") for g in book.grids}
        unknown = [k for k in assignments if k not in names]
        if unknown:
            raise ValidationError(
                {"by_grid": [_("Grid %(id)s is not part of this book.") % {"id": ", ".join(map(str, unknown))}]}
            )
        missing = [names[g] for g in grid_ids if g not in assignments]
        if missing:
            raise ValidationError({"by_grid": [_("Choose a receiver for: %(grids)s.") % {"grids": ", ".join(missing)}]})
        allowed_ids = set(allowed.filter(pk__in={u.pk for u in assignments.values()}).values_list("pk", flat=True))
        wrong = [f"{names[g]}: {u}" for g, u in assignments.items() if u.pk not in allowed_ids]
        if wrong:
            raise ValidationError(
                {
                    "by_grid": [
                        _("These receivers do not work in your scope or cannot receive: %(list)s.")
                        % {"list": "; ".join(wrong)}
                    ]
                }
            )
        return dict(assignments)
    to = assignments
    if to is None and book.empty:
        return {}  # only memberships to end
    if to is None:
        raise ValidationError({"to_user": [_("Choose who receives the book.")]})
    if to.pk == book.from_user.pk:
        raise ValidationError({"to_user": [_("The receiver must be someone else.")]})
    if not allowed.filter(pk=to.pk).exists():
        raise ValidationError({"to_user": [_("The receiver does not work in your scope.")]})
    return dict.fromkeys(grid_ids, to)
