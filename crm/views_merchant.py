"""Merchant pages: the list (search by name, my grids, my merchants) and the merchant 360 page.

Both start from ``Merchant.objects.restrict(user)``: a merchant outside the user's scope is a 404,
and nothing on either page comes from outside the scope (related merchants are only counted)."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import OuterRef, Subquery
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.translation import gettext as _

from core.context_processors import request_memberships
from crm.choices import ActivityKind, MerchantStatus
from crm.models import Activity, Merchant
from crm.selectors.profile import merchant_profile
from crm.selectors.relations import related_merchants, relation_graph
from crm.selectors.timeline import merchant_timeline
from grids.choices import GRID_ROLES
from grids.models import Grid

PAGE_SIZE = 30
TIMELINE_PAGE = 20


def _int_param(request, name: str) -> int | None:
    value = request.GET.get(name, "")
    return int(value) if value.isdigit() and len(value) < 19 else None


@login_required
def merchant_list(request):
    """Merchants in scope: ``q`` (name contains; the trigram index serves it), ``grid`` (one of
    the user's grids), ``mine`` (owned by the user), ``status``; 30 a page, with the last visit."""
    user = request.user
    merchants = Merchant.objects.restrict(user)
    q = request.GET.get("q", "").strip()[:100]
    grid_id = _int_param(request, "grid")
    status = request.GET.get("status", "")
    mine = request.GET.get("mine") == "1"
    if q:
        merchants = merchants.filter(name__icontains=q)
    if grid_id is not None:
        merchants = merchants.filter(grid_id=grid_id)
    if status in MerchantStatus.values:
        merchants = merchants.filter(status=status)
    if mine:
        merchants = merchants.filter(owner=user)
    # Last visit per merchant of the page: the partial index activity_last_visit, LIMIT 1 each.
    last_visit = (
        Activity.objects.filter(merchant=OuterRef("pk"), kind=ActivityKind.VISIT)
        .order_by("-occurred_at")
        .values("occurred_at")[:1]
    )
    merchants = (
        merchants.select_related("grid", "owner", "industry")
        .annotate(last_visit_at=Subquery(last_visit))
        .order_by("name", "id")
    )
    page = Paginator(merchants, PAGE_SIZE).get_page(request.GET.get("page"))

    # The grid filter offers the grids the user works in (grid roles), or, for managers, the grids
    # in scope when there are not too many to list.
    held = [m.grid_id for m in request_memberships(request) if m.role in GRID_ROLES and m.grid_id]
    grids = Grid.objects.restrict(user).order_by("code")
    grid_choices = list(grids.filter(pk__in=held)) if held else list(grids[:201])
    if len(grid_choices) > 200:
        grid_choices = []
    params = request.GET.copy()
    params.pop("page", None)
    context = {
        "page": page,
        "q": q,
        "grid_id": grid_id,
        "status": status,
        "mine": mine,
        "grid_choices": grid_choices,
        "status_choices": MerchantStatus.choices,
        "querystring": params.urlencode(),
        "filtered": bool(q or grid_id or status or mine),
    }
    return render(request, "crm/merchant_list.html", context)


def _page_strings() -> dict:
    """Every string static/js/merchant.js shows, translated here (no JavaScript catalogue)."""
    return {
        "show": _("Show"),
        "hide": _("Hide"),
        "load_more": _("Load older"),
        "loading": _("Loading…"),
        "error": _("Could not load. Check the connection and try again."),
        "no_permission": _("You do not have permission to view personal data."),
        "by": _("by %(name)s"),
        "next_step": _("Next step"),
        "distance": _("%(m)s m from the merchant"),
        "accuracy": _("accuracy %(m)s m"),
        "duration": _("%(min)s min"),
        "photo": _("Photo"),
        "hidden_merchants": _("more outside your scope"),
        "end": _("That is everything."),
    }


@login_required
def merchant_detail(request, pk: int):
    """Merchant 360: profile, people (masked), products, funnel position, relations (graph and
    list) and the first page of the timeline; older items load from the API."""
    user = request.user
    merchant = get_object_or_404(
        Merchant.objects.restrict(user).select_related("grid__sub_branch", "owner", "industry", "place"), pk=pk
    )
    related = related_merchants(merchant=merchant, user=user)
    profile = merchant_profile(merchant=merchant, user=user, related=related)
    try:
        timeline = merchant_timeline(
            merchant=merchant, user=user, before=request.GET.get("before") or None, limit=TIMELINE_PAGE
        )
    except ValidationError:
        timeline = merchant_timeline(merchant=merchant, user=user, limit=TIMELINE_PAGE)
    config = {
        "merchant_id": merchant.pk,
        "urls": {
            "timeline": reverse("api:merchant-timeline", args=[merchant.pk]),
            # "0" is replaced by a person's id in merchant.js.
            "pii": reverse("api:person-pii", args=[0]),
        },
        "next_before": timeline["next_before"],
        "timeline_page": TIMELINE_PAGE,
        "graph": relation_graph(merchant=merchant, related=related),
        "strings": _page_strings(),
    }
    context = {
        "merchant": merchant,
        "profile": profile,
        "people": profile["people"],
        "products": profile["products"],
        "leads": profile["leads"],
        "closed_leads": profile["closed_leads"],
        "funnel_stages": profile["funnel_stages"][:-1],  # lost is shown as a state, not a step
        "related": related,
        "timeline": timeline,
        "can_view_pii": profile["can_view_pii"],
        "page_config": config,
    }
    return render(request, "crm/merchant_detail.html", context)
