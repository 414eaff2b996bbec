"""Role-dependent links of the main nav (templates/base.html): the territory page for the roles that
may open it, the offline field app for grid teams. Decided from the active memberships the header
already fetched (one query per request, shared with the role label); each page checks access again
(grids.views.territory_page, crm.views_field)."""

from django import template

from core.context_processors import request_memberships
from grids.choices import GRID_ROLES
from grids.views import TERRITORY_ROLES

register = template.Library()


def _roles(context) -> set[str] | None:
    """The user's active roles, or None for anonymous; superusers count as territory managers (the
    field app is for grid teams: a superuser holds no grid)."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    if user.is_superuser:
        return set(TERRITORY_ROLES)
    return {m.role for m in request_memberships(request)}


@register.simple_tag(takes_context=True)
def can_manage_territory(context) -> bool:
    return bool((_roles(context) or set()) & set(TERRITORY_ROLES))


@register.simple_tag(takes_context=True)
def works_in_the_field(context) -> bool:
    """Grid leaders and account managers: the people the offline field app is for."""
    return bool((_roles(context) or set()) & set(GRID_ROLES))
