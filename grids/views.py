from django.apps import apps
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.gis.db.models import Extent
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from core.context_processors import request_memberships
from grids.choices import GRID_ROLES, ChannelRole, GridKind, GridStatus, PlaceKind, ProposalKind, Role
from grids.models import Grid, Membership, SubBranch
from grids.scoping import resolve_scope

# Who draws and assigns grids: the territory page and its nav link (grids.templatetags.nav_links).
# Mid-office is read-only and grid members hold single grids, so neither gets the page.
TERRITORY_ROLES = (Role.BRANCH_MANAGER, Role.REGIONAL_HEAD)


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


# -- Territory page ---------------------------------------------------------------------------

_ID = 987654321  # reversed into URL templates, then replaced by "{id}" for territory.js


def _api_url(name: str, with_id: bool = False) -> str | None:
    """An API URL for territory.js (``{id}`` where the object id goes); None when the route does
    not exist, so the page hides the feature instead of failing."""
    try:
        if with_id:
            return reverse(f"api:{name}", kwargs={"pk": _ID}).replace(str(_ID), "{id}")
        return reverse(f"api:{name}")
    except NoReverseMatch:
        return None


def _territory_strings() -> dict:
    """Every string territory.js shows, translated here (the page needs no JavaScript catalog)."""
    return {
        "merchants": _("Merchants"),
        "grid": _("Grid"),
        "code": _("Code"),
        "type": _("Type"),
        "name": _("Grid name"),
        "sub_branch": _("Sub-branch"),
        "leader": _("Grid leader"),
        "no_leader": _("— no grid leader —"),
        "unassigned": _("Unassigned"),
        "outside": _("Outside any grid"),
        "new_grid": _("New grid"),
        "save": _("Save"),
        "cancel": _("Cancel"),
        "close": _("Close"),
        "back": _("Back"),
        "loading": _("Loading…"),
        "error": _("The request failed. Check the connection and try again."),
        "error_status": _("The server answered %(status)s."),
        "not_found": _("Not found, or outside your scope."),
        "draw_hint": _("Tap the map to place the corners of the new grid; tap the first corner to finish."),
        "edit_hint": _("Drag the corners of the grid; they snap to the neighbouring borders. Then preview."),
        "split_hint": _("Draw a line across the grid where it should be split; tap the last point again to finish."),
        "merge_hint": _("Tap the grids to merge with the selected grid, then preview."),
        "select_first": _("Select a grid on the map or in the list first."),
        "preview_changes": _("Preview changes"),
        "preview_merge": _("Preview merge"),
        "geom_errors": _("The boundary was refused"),
        "show_spot": _("Show on the map"),
        "overlaps": _("Overlaps with other grids"),
        "overlap_row": _("%(grid)s: %(area)s m²"),
        "accept_overlap": _("I accept the overlap (the overlapping area stays in both grids)"),
        "field_errors": _("Please correct the fields marked below."),
        "diff": _("Changes to review"),
        "diff_intro": _("Nothing has changed yet. Apply to move these merchants, or discard."),
        "diff_none": _("No merchant or place changes grid."),
        "merchant": _("Merchant"),
        "from": _("From"),
        "to": _("To"),
        "per_am": _("Per account manager"),
        "account_manager": _("Account manager"),
        "gains": _("Gains"),
        "loses": _("Loses"),
        "moving_merchants": _("Merchants that move"),
        "moving_places": _("Places that move"),
        "apply": _("Apply"),
        "discard": _("Discard"),
        "applied": _("Applied: the grids and owners are updated."),
        "discarded": _("Discarded: nothing was changed."),
        "stale": _("The grids changed since this preview; preview again."),
        "versions": _("Versions"),
        "version": _("Version"),
        "no_versions": _("No earlier versions."),
        "show_version": _("Show"),
        "team": _("Team"),
        "internal_team": _("Grid leader and account managers"),
        "channel_contacts": _("Channel key persons"),
        "no_team": _("Nobody is assigned to this grid yet."),
        "no_contacts": _("No channel key person yet."),
        "since": _("since %(date)s"),
        "coverage": _("Coverage"),
        "coverage_metric": _("Colour grids by"),
        "visited_30": _("Visited in 30 days"),
        "visited_90": _("Visited in 90 days"),
        "in_grid_rate": _("In-grid rate"),
        "never_visited": _("Never visited"),
        "no_data": _("No data"),
        "sort_by": _("Sort by %(column)s"),
        "gaps": _("Gaps"),
        "gaps_intro": _("Areas of the sub-branch that no grid covers."),
        "gap_row": _("Gap %(n)s: %(area)s m²"),
        "no_gaps": _("No gaps: the grids cover the sub-branch."),
        "import": _("Import"),
        "import_file": _("File (GeoJSON, KML or zipped Shapefile)"),
        "import_inspect": _("Read the file"),
        "import_mapping": _("Which field holds what"),
        "import_field_none": _("— not in the file —"),
        "import_preview": _("Check the rows"),
        "import_commit": _("Import all rows"),
        "import_row": _("Row"),
        "import_result": _("Result"),
        "import_ok": _("OK"),
        "import_has_errors": _("Some rows have errors: nothing was saved. Correct the file and try again."),
        "import_ready": _("Every row is valid: import them all."),
        "import_done": _("Imported: %(n)s grids."),
        "import_features": _("%(n)s features, fields: %(fields)s"),
        "export": _("Export"),
        "export_geojson": _("Grids as GeoJSON"),
        "export_excel": _("Grids as Excel"),
        "export_places": _("Places as GeoJSON"),
        "export_places_excel": _("Places as Excel"),
        "import_accept_overlaps": _("Import even though some rows overlap"),
        "import_row_overlap": _("overlaps %(grid)s: %(area)s m²"),
        "import_file_overlap": _("overlaps row %(row)s: %(area)s m²"),
        "not_available": _("Not available yet."),
        "m2": _("m²"),
        "edit_boundary": _("Edit boundary"),
        "split": _("Split"),
        "merge": _("Merge"),
        "new_grid_name": _("Name of the new part"),
        "required": _("This field is required."),
        "trim_neighbours": _("Take the area from the neighbouring grids (their merchants inside move to the new grid)"),
        "edit_details": _("Edit details"),
        "saved": _("Saved."),
        "team_history": _("Membership history"),
        "role_grid_leader": _("Grid leader"),
        "role_account_manager": _("Account manager"),
        "accept_first": _("Tick “I accept the overlap” first."),
        "coverage_total": _("Whole sub-branch"),
        "gap_total": _("Gaps in total: %(area)s m²"),
        "locked": _("Owner set by hand: stays with the merchant"),
    }


def _territory_sub_branches(user):
    """The sub-branches whose grids ``user`` may change, in code order (restricted twice: what the
    user may see, and the units their write scope holds)."""
    visible = SubBranch.objects.restrict(user).order_by("code")
    if user.is_superuser:
        return visible
    scope = resolve_scope(user, "change")
    return visible.filter(Q(pk__in=scope.sub_branch_ids) | Q(branch_id__in=scope.branch_ids))


@login_required
def territory_page(request):
    """网格规划: branch managers and regional heads draw, edit, split, merge, import and export the
    grids of a sub-branch, review the merchants a change moves before applying it, assign teams,
    and see coverage and gaps.

    Access: superusers and active branch managers / regional heads (403 otherwise, like the
    handover page). The page holds only restricted data: the sub-branches the user may change,
    their grids with merchant counts, the people of those grids; the rest comes from the
    restricted API (every write re-checks scope in its service)."""
    user = request.user
    roles = {m.role for m in request_memberships(request)}
    if not (user.is_superuser or roles & set(TERRITORY_ROLES)):
        raise PermissionDenied
    sub_branches = list(_territory_sub_branches(user))
    if not sub_branches:
        raise PermissionDenied
    wanted = _int_param(request, "sub_branch")
    current = next((sb for sb in sub_branches if sb.pk == wanted), sub_branches[0])

    # Active grids only: retired ones (merged away) keep their history but leave the map.
    grids = Grid.objects.restrict(user, "change").filter(sub_branch=current, status=GridStatus.ACTIVE)
    Merchant = apps.get_model("crm", "Merchant")
    counts = dict(
        Merchant.objects.restrict(user)
        .filter(grid__in=grids.values("pk"))
        .values_list("grid_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    today = timezone.localdate()
    active = Membership.objects.restrict(user).filter(
        Q(end_date__isnull=True) | Q(end_date__gte=today),
        start_date__lte=today,
        grid__in=grids.values("pk"),
        role__in=GRID_ROLES,
    )
    leaders: dict[int, tuple[int, str]] = {}
    people: dict[int, str] = {}
    for m in active.select_related("user").order_by("grid_id", "role", "user__username"):
        people[m.user_id] = str(m.user)
        if m.role == Role.GRID_LEADER and m.grid_id not in leaders:
            leaders[m.grid_id] = (m.user_id, str(m.user))
    grid_rows = [
        {
            "id": g.pk,
            "name": g.name,
            "code": g.code,
            "kind": g.kind,
            "kind_display": g.get_kind_display(),
            "status": g.status,
            "merchant_count": counts.get(g.pk, 0),
            "leader": leaders.get(g.pk, (None, ""))[1],
            "leader_id": leaders.get(g.pk, (None, ""))[0],
        }
        for g in grids.order_by("code")
    ]
    extent = grids.aggregate(extent=Extent("geom"))["extent"]

    grid_export, place_export = _api_url("export-grid-list"), _api_url("export-place-list")
    exports = {
        "geojson": f"{grid_export}?format=geojson" if grid_export else None,
        "excel": f"{grid_export}?format=xlsx" if grid_export else None,
        "places": f"{place_export}?format=geojson" if place_export else None,
        "places_excel": f"{place_export}?format=xlsx" if place_export else None,
    }
    config = {
        "sub_branch": {"id": current.pk, "name": current.name, "color": current.color},
        "sub_branches": [{"id": sb.pk, "name": sb.name} for sb in sub_branches],
        "grids": grid_rows,
        "people": [{"id": pk, "name": name} for pk, name in sorted(people.items(), key=lambda kv: kv[1])],
        "kinds": [{"value": v, "label": str(label)} for v, label in GridKind.choices],
        "proposal_kinds": {v: str(label) for v, label in ProposalKind.choices},
        "channel_roles": {v: str(label) for v, label in ChannelRole.choices},
        "urls": {
            "grid_layer": reverse("api:layer-grid-list"),
            "merchant_layer": reverse("api:layer-merchant-list"),
            "grids": _api_url("grid-list"),
            "create_preview": _api_url("grid-propose"),
            "grid": _api_url("grid-detail", with_id=True),
            "redraw": _api_url("grid-redraw", with_id=True),
            "split": _api_url("grid-split", with_id=True),
            "merge": _api_url("grid-merge"),
            "versions": _api_url("grid-versions", with_id=True),
            "team": _api_url("grid-team", with_id=True),
            "proposal": _api_url("redrawproposal-detail", with_id=True),
            "apply": _api_url("redrawproposal-apply", with_id=True),
            "discard": _api_url("redrawproposal-discard", with_id=True),
            "channel_contacts": _api_url("channelcontact-list"),
            "gaps": _api_url("subbranch-gaps", with_id=True),
            "coverage": _api_url("report-coverage-list"),
            "import_inspect": _api_url("import-grid-inspect"),
            "import_preview": _api_url("import-grid-preview"),
            "import_commit": _api_url("import-grid-commit"),
            "exports": exports,
        },
        "tiles": {
            "url": settings.MAP_TILE_URL,
            "attribution": settings.MAP_TILE_ATTRIBUTION,
            "crs": settings.MAP_TILE_CRS,
        },
        "bounds": [[extent[1], extent[0]], [extent[3], extent[2]]] if extent else None,
        "lang": request.LANGUAGE_CODE,
        "strings": _territory_strings(),
    }
    context = {
        "territory_config": config,
        "sub_branch": current,
        "sub_branches": sub_branches,
        "grid_rows": grid_rows,
        "kinds": GridKind.choices,
    }
    return render(request, "grids/territory.html", context)
