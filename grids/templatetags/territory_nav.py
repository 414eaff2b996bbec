"""The main nav's link to the territory page (templates/base.html), shown to the roles that may
open it. Decided from the active memberships the header already fetched (one query per request,
shared with the role label); the page itself checks access again (grids.views.territory_page)."""

from django import template

from core.context_processors import request_memberships
from grids.views import TERRITORY_ROLES

register = template.Library()


@register.simple_tag(takes_context=True)
def can_manage_territory(context) -> bool:
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    return any(m.role in TERRITORY_ROLES for m in request_memberships(request))
