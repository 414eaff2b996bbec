from django.conf import settings
from django.utils.functional import SimpleLazyObject
from django.utils.translation import gettext as _


def request_memberships(request) -> list:
    """The user's active memberships, fetched once per request and shared by the page header and
    the home page (one query, not two)."""
    if not hasattr(request, "_gridcrm_memberships"):
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            request._gridcrm_memberships = []
        else:
            # Imported late: core holds no models and sits below the apps it serves.
            from grids.selectors import active_memberships

            request._gridcrm_memberships = list(active_memberships(user=user))
    return request._gridcrm_memberships


def _role_label(request) -> str:
    user = request.user
    if user.is_superuser:
        return _("Administrator")
    labels = []
    for m in request_memberships(request):
        label = m.get_role_display()
        if label not in labels:
            labels.append(label)
    return " · ".join(labels) if labels else _("No scope yet")


def site(request):
    """Map settings every page needs (the base map is a setting: banks run their own tiles), and
    the header's role label (lazy: pages that do not show it run no query)."""
    context = {
        "MAP_TILE_URL": settings.MAP_TILE_URL,
        "MAP_TILE_ATTRIBUTION": settings.MAP_TILE_ATTRIBUTION,
        "MAP_TILE_CRS": settings.MAP_TILE_CRS,
    }
    if getattr(request, "user", None) is not None and request.user.is_authenticated:
        context["header_role"] = SimpleLazyObject(lambda: _role_label(request))
    return context
