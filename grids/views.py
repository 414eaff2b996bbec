from django.apps import apps
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.gis.db.models import Extent
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _

from grids.choices import GridKind, GridStatus, PlaceKind
from grids.models import Grid, SubBranch


def _int_param(request, name: str) -> int | None:
    value = request.GET.get(name, "")
    return int(value) if value.isdigit() and len(value) < 19 else None


def _map_strings() -> dict:
    """Every string map.js shows, translated here (the page needs no JavaScript catalog)."""
    return {
        "grids": _("Grids"),
        "places": _("Places"),
        "merchants": _("Merchants"),
        "layers": _("Layers"),
        "layers_legend": _("Layers and legend"),
        "sub_branches": _("Sub-branches"),
        "sub_branch": _("Sub-branch"),
        "cluster": _("Several merchants: tap to zoom in"),
        "place": _("Place (park, market, district)"),
        "code": _("Code"),
        "type": _("Type"),
        "status": _("Status"),
        "grid": _("Grid"),
        "truncated": _("Too many items in this area: only part is shown. Zoom in to see all."),
        "error": _("The map data could not be loaded. Check the connection and try again."),
        "no_base_map": _("No base map configured: grids and merchants only"),
        "show_legend": _("Show layers and legend"),
        "hide_legend": _("Hide layers and legend"),
    }


@login_required
def map_page(request):
    """The map: grids coloured by sub-branch, merchants clustered. Feature data comes from the
    restricted layer endpoints, so the page itself holds nothing out of scope; it only decides where
    to look first (the user's grids, or the grid / sub-branch asked for with ``?grid=`` or
    ``?sub_branch=``, both restricted) and what the legend shows."""
    user = request.user
    grids = Grid.objects.restrict(user)
    focus = grids
    grid_id, sub_branch_id = _int_param(request, "grid"), _int_param(request, "sub_branch")
    if grid_id is not None:
        focus = grids.filter(pk=grid_id)
    elif sub_branch_id is not None:
        focus = grids.filter(sub_branch_id=sub_branch_id)
    extent = focus.aggregate(extent=Extent("geom"))["extent"]
    if extent is None and focus is not grids:
        extent = grids.aggregate(extent=Extent("geom"))["extent"]

    # grids must not import crm (dependencies point one way); the merchant status labels are
    # looked up through the app registry.
    merchant_status = apps.get_model("crm", "Merchant")._meta.get_field("status").flatchoices
    sub_branches = SubBranch.objects.restrict(user).filter(grids__in=grids).distinct().order_by("code")
    config = {
        "layers": {
            "grids": reverse("api:layer-grid-list"),
            "places": reverse("api:layer-place-list"),
            "merchants": reverse("api:layer-merchant-list"),
        },
        "tiles": {
            "url": settings.MAP_TILE_URL,
            "attribution": settings.MAP_TILE_ATTRIBUTION,
            "crs": settings.MAP_TILE_CRS,
        },
        # [[south, west], [north, east]] in WGS 84; map.js shifts it for a GCJ-02 base map.
        "bounds": [[extent[1], extent[0]], [extent[3], extent[2]]] if extent else None,
        "labels": {
            "grid_kind": dict(GridKind.choices),
            "grid_status": dict(GridStatus.choices),
            "place_kind": dict(PlaceKind.choices),
            "merchant_status": {str(k): str(v) for k, v in merchant_status},
        },
        "strings": _map_strings(),
        "legend": [{"id": sb.pk, "name": sb.name, "color": sb.color} for sb in sub_branches],
    }
    return render(request, "grids/map.html", {"map_config": config, "has_grids": extent is not None})
