"""Merchant pages: the list (search by name, my grids, my merchants) and the merchant 360 page.

Both start from ``Merchant.objects.restrict(user)``: a merchant outside the user's scope is a 404,
and nothing on either page comes from outside the scope (related merchants are only counted)."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import OuterRef, Subquery
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from core.context_processors import request_memberships
from crm.choices import FUNNEL_ORDER, ActivityKind, Intent, LeadStage, MerchantStatus, Outcome, PhotoKind
from crm.models import Activity, Merchant
from crm.selectors.profile import merchant_profile
from crm.selectors.relations import related_merchants, relation_graph
from crm.selectors.timeline import merchant_timeline
from grids.choices import GRID_ROLES
from grids.models import Grid

PAGE_SIZE = 30
TIMELINE_PAGE = 20
# The stages the log panel can move a lead to in the same step as the activity: the activity API
# moves a lead without amounts, and applied / approved / disbursed need one (lead_advance_stage).
LOG_ADVANCE_STAGES = (LeadStage.CONTACTED, LeadStage.VISITED, LeadStage.INTERESTED)


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
        # The log panel (templates/crm/merchant_log_panel.html).
        "locating": _("Locating…"),
        "position": _("Position %(lat)s, %(lon)s · accuracy %(acc)s m"),
        "checkin_again": _("Check in again"),
        "geo_unsupported": _(
            "This browser cannot give the device's position (it needs HTTPS). "
            "You can still save the visit without a check-in."
        ),
        "geo_denied": _(
            "Location permission was denied. Allow location for this site in the browser settings and "
            "check in again, or save the visit without a check-in."
        ),
        "geo_unavailable": _(
            "The position is not available right now. Try again in the open or near a window, or save "
            "the visit without a check-in."
        ),
        "geo_timeout": _("Locating took too long. Try again, or save the visit without a check-in."),
        "no_checkin_note": _("No check-in yet: the visit will be saved without a position."),
        "saving": _("Saving…"),
        "save": _("Save"),
        "saved_visit_ok": _("Visit saved. Checked in %(m)s m from the merchant: accepted."),
        "saved_visit_far": _(
            "Visit saved, check-in flagged: %(m)s m from the merchant, beyond the %(radius)s m check-in radius."
        ),
        "saved_visit_inaccurate": _(
            "Visit saved, check-in flagged: %(m)s m from the merchant, but the position is only accurate to "
            "%(acc)s m (at most %(max)s m counts)."
        ),
        "saved_visit_unknown_accuracy": _(
            "Visit saved, check-in flagged: %(m)s m from the merchant, but the device gave no accuracy."
        ),
        "saved_visit_no_checkin": _("Visit saved without a check-in."),
        "saved_call": _("Call saved."),
        "saved_already": _("This activity had already been saved."),
        "lead_moved": _("Lead moved to %(stage)s."),
        "task_created": _("Follow-up task created, due %(date)s."),
        "photo_uploading": _("Uploading the photo…"),
        "photo_saved": _("Photo attached: %(kind)s."),
        "photo_failed": _("The activity is saved, but the photo is not. Correct it and attach it again."),
        "photo_type": _("The photo must be a JPEG, PNG or WebP image."),
        "photo_size": _("The photo is larger than %(mb)s MB."),
        "fix_fields": _("Nothing was saved. Correct the fields marked below."),
        "save_error": _("Could not save. Check the connection and try again; nothing you entered is lost."),
        "forbidden": _("You may not log activities for this merchant."),
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
    # The log panel is offered to those who may work on the merchant (the API decides again).
    can_log = Merchant.objects.restrict(user, "change").filter(pk=merchant.pk).exists()
    rank = {s.value: i for i, s in enumerate(FUNNEL_ORDER)}
    config = {
        "merchant_id": merchant.pk,
        "urls": {
            "timeline": reverse("api:merchant-timeline", args=[merchant.pk]),
            # "0" is replaced by a person's id in merchant.js.
            "pii": reverse("api:person-pii", args=[0]),
            "activities": reverse("api:activity-list"),
            "photos": reverse("api:photo-list"),
            "leads": reverse("api:lead-list"),
        },
        "next_before": timeline["next_before"],
        "timeline_page": TIMELINE_PAGE,
        "graph": relation_graph(merchant=merchant, related=related),
        "strings": _page_strings(),
        "funnel": [{"value": s["value"], "label": s["label"]} for s in profile["funnel_stages"]],
        "intents": dict(Intent.choices),
        "photo_kinds": dict(PhotoKind.choices),
        "checkin_radius_m": settings.CHECKIN_RADIUS_M,
        "checkin_max_accuracy_m": settings.CHECKIN_MAX_ACCURACY_M,
        "photo_types": list(settings.PHOTO_CONTENT_TYPES),
        "photo_max_bytes": settings.PHOTO_MAX_BYTES,
    }
    log = None
    if can_log:
        log = {
            "kinds": [(k, ActivityKind(k).label) for k in (ActivityKind.VISIT, ActivityKind.CALL)],
            "outcomes": Outcome.choices,
            "intents": Intent.choices,
            "photo_kinds": PhotoKind.choices,
            "stages": [{"value": s.value, "label": s.label, "rank": rank[s.value]} for s in LOG_ADVANCE_STAGES],
            "leads": [{**lead, "rank": rank.get(lead["stage"], -1)} for lead in profile["leads"]],
            "today": timezone.localdate(),
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
        "log": log,
    }
    return render(request, "crm/merchant_detail.html", context)
