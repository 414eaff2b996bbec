"""Reads about grids that need more than a filter."""

from django.apps import apps
from django.db.models import Count, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from grids.choices import GridStatus
from grids.models import Grid, Membership


def grids_with_colour(queryset):
    """Grids annotated with their sub-branch's map colour (for the layer)."""
    return queryset.annotate(color=F("sub_branch__color"))


def grids_with_merchant_count(queryset):
    """Grids annotated with ``merchant_count``: the merchants filed under each (all of them: whoever
    may see a grid sees its merchants). One count per grid on the merchant grid index (an
    index-only scan), only for the grids of the page. The merchant model is looked up by name:
    ``grids`` does not import ``crm``."""
    merchant = apps.get_model("crm", "Merchant")
    counts = (
        merchant._base_manager.filter(grid_id=OuterRef("pk"))
        .order_by()
        .values("grid_id")
        .annotate(n=Count("*"))
        .values("n")
    )
    return queryset.annotate(merchant_count=Coalesce(Subquery(counts), 0))


def grid_for_point(point) -> int | None:
    """The grid a location belongs to, decided in the database.

    Rule for shared borders: a point on the boundary of several active grids belongs to the one
    with the lowest id, so every point lands in exactly one grid (ST_Intersects covers the edge)."""
    return (
        Grid.objects.filter(status=GridStatus.ACTIVE, geom__intersects=point)
        .order_by("id")
        .values_list("id", flat=True)
        .first()
    )


def active_memberships(*, user):
    today = timezone.localdate()
    return (
        Membership.objects.filter(user=user, start_date__lte=today)
        .filter(Q(end_date__isnull=True) | Q(end_date__gte=today))
        .select_related("branch", "sub_branch", "grid", "grid__sub_branch")
        .order_by("role", "id")
    )


def user_summary(*, user) -> dict:
    memberships = active_memberships(user=user)
    return {
        "id": user.pk,
        "username": user.username,
        "display": str(user),
        "is_superuser": user.is_superuser,
        "memberships": [
            {
                "role": m.role,
                "role_display": m.get_role_display(),
                "unit_type": "branch" if m.branch_id else "sub_branch" if m.sub_branch_id else "grid",
                "unit_id": m.branch_id or m.sub_branch_id or m.grid_id,
                "unit_display": str(m.branch or m.sub_branch or m.grid),
            }
            for m in memberships
        ],
        "grid_count": Grid.objects.restrict(user, "view").count(),
    }
