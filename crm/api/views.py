import json

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.http import Http404, HttpResponse
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from core.api.layers import LayerViewSet
from core.api.viewsets import RestrictedModelViewSet, RestrictedReadOnlyViewSet
from crm.api.serializers import DuplicateCheckSerializer, IndustrySerializer, MerchantSerializer, MergeSerializer
from crm.choices import MerchantStatus
from crm.filtersets import MerchantFilterSet
from crm.models import Industry, Merchant
from crm.selectors.my_merchants import MAX_PAGE_SIZE, ORDERINGS, my_merchants_page, parse_my_merchants_query
from crm.selectors.profile import merchant_profile
from crm.selectors.relations import related_merchants
from crm.selectors.timeline import merchant_timeline_if_visible, parse_limit
from crm.services.duplicates import merchant_duplicate_candidates
from crm.services.merchants import _owner_serves_grid, merchant_assign
from crm.services.merge import merchants_merge
from grids.choices import GridStatus
from grids.scoping import resolve_scope
from grids.services._scope import drawable_grids, drawable_sub_branches
from grids.services.ownership import grid_owner_for


class IndustryViewSet(RestrictedReadOnlyViewSet):
    queryset = Industry.objects.all()
    serializer_class = IndustrySerializer
    pagination_class = None


class _Duplicates(Exception):
    """Raised inside the create transaction to roll it back and answer 409."""

    def __init__(self, found: dict):
        self.found = found


def _has_candidates(found: dict) -> bool:
    return bool(found["candidates"] or found["hidden"])


def merchant_etag(merchant_id: int, version: int) -> str:
    """The ETag of a merchant's representation: its id and version (weak: the JSON bytes may differ
    by language or PII masking, the record does not)."""
    return f'W/"m{merchant_id}-v{version}"'


def etag_matches(header: str, etag: str) -> bool:
    """``If-Match``: ``*`` or any of the listed tags, compared without their weak prefix."""

    def bare(tag: str) -> str:
        tag = tag.strip()
        return tag[2:] if tag.startswith("W/") else tag

    return any(tag.strip() == "*" or bare(tag) == bare(etag) for tag in header.split(","))


IF_MATCH = OpenApiParameter(
    "If-Match",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="The ETag of the version you edited. A stale one is refused (412) and nothing is written; "
    "without the header the save goes through (web forms).",
)
STALE_RESPONSE = OpenApiResponse(
    OpenApiTypes.OBJECT, description="Precondition failed: ``detail`` and the ``current`` representation."
)


class MyMerchantSerializer(serializers.Serializer):
    """One row of ``GET /merchants/my/`` (documentation only: the rows are built by PostgreSQL)."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=MerchantStatus.choices)
    grid = serializers.IntegerField(allow_null=True, help_text="The grid's id.")
    address = serializers.CharField()
    last_visit_at = serializers.DateTimeField(
        allow_null=True,
        help_text="When the latest visit (not call) took place (ISO 8601, UTC offset); null: never visited.",
    )


class MyMerchantPageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = MyMerchantSerializer(many=True)


class MerchantAssignInputSerializer(serializers.Serializer):
    """POST body of merchants/<id>/assign/: a manager's manual override of grid and owner."""

    grid = serializers.IntegerField(
        min_value=1, max_value=2**31 - 1, required=False, help_text="A grid you manage (required when locking)."
    )
    owner = serializers.IntegerField(
        min_value=1,
        max_value=2**31 - 1,
        required=False,
        allow_null=True,
        help_text="A member of that grid; null: the grid's unassigned pool (required when locking).",
    )
    lock = serializers.BooleanField(
        default=True,
        help_text="false releases the merchant to automatic assignment (grid and owner are then ignored).",
    )

    def validate(self, attrs):
        if attrs["lock"]:
            missing = [name for name in ("grid", "owner") if name not in attrs]
            if missing:
                raise serializers.ValidationError({name: [_("This field is required.")] for name in missing})
        return attrs


class MerchantAssignmentSerializer(MerchantSerializer):
    """A merchant after a manual (un)assignment, with its ``assignment_locked`` mark."""

    assignment_locked = serializers.BooleanField(read_only=True)

    class Meta(MerchantSerializer.Meta):
        fields = [*MerchantSerializer.Meta.fields, "assignment_locked"]


class MerchantViewSet(RestrictedModelViewSet):
    """Merchants, and the merchant 360 view: ``profile``, ``timeline``, ``related``; duplicate
    candidates before a create (``duplicates``) and ``merge``. Every action starts from a restricted
    queryset: a merchant outside the user's scope answers 404 on all of them."""

    queryset = Merchant.objects.select_related("grid")
    serializer_class = MerchantSerializer
    filterset_class = MerchantFilterSet
    # No hard delete: a merchant that is gone is marked "closed" (its history stays).
    http_method_names = ["get", "post", "put", "patch", "head", "options"]

    # Actions whose HTTP method does not say what they do to the merchant in the URL.
    ACTION_SCOPE = {"merge": "change", "duplicates": "view"}

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.scope_action = self.ACTION_SCOPE.get(self.action, self.scope_action)

    def get_queryset(self):
        qs = super().get_queryset()
        if self.action == "profile":
            qs = qs.select_related("grid__sub_branch", "owner", "industry", "place")
        elif self.action == "related":
            qs = Merchant.objects.restrict(self.request.user, self.scope_action).only("id", "name")
        return qs

    # -- Create with duplicate check ----------------------------------------------------------------

    @extend_schema(
        responses={
            201: MerchantSerializer,
            409: OpenApiResponse(OpenApiTypes.OBJECT, description="Duplicate candidates: review, then confirm."),
        }
    )
    def create(self, request, *args, **kwargs):
        """Create a merchant. When duplicate candidates exist (credit code, name nearby) and the
        body lacks ``"confirm_not_duplicate": true``, nothing is saved and the answer is 409 with
        the candidates; a candidate with the same credit code makes it a 400 on ``credit_code``
        (the code is unique) with the candidates under ``duplicates``."""
        serializer = self.get_serializer(data=request.data)
        try:
            serializer.is_valid(raise_exception=True)
            confirmed = serializer.validated_data.get("confirm_not_duplicate", False)
            with transaction.atomic():
                # Saved first so that every other error (scope, owner, validation) comes first.
                merchant = serializer.save()
                if not confirmed:
                    found = self._candidates(serializer.validated_data, merchant)
                    if _has_candidates(found):
                        raise _Duplicates(found)
        except _Duplicates as exc:
            return Response(
                {
                    "detail": _("Possible duplicates found. Review them, then confirm to create anyway."),
                    "duplicates": exc.found,
                },
                status=status.HTTP_409_CONFLICT,
            )
        except serializers.ValidationError as exc:
            code = request.data.get("credit_code") if isinstance(request.data, dict) else None
            if isinstance(exc.detail, dict) and "credit_code" in exc.detail and isinstance(code, str):
                # The code is taken (or mistyped): show who holds it, within scope rules.
                found = self._candidates({"credit_code": code[:18]}, None)
                if _has_candidates(found):
                    exc.detail["duplicates"] = found
            raise
        headers = self.get_success_headers(serializer.data)
        return Response(serializer.data, status=status.HTTP_201_CREATED, headers=headers)

    def _candidates(self, data: dict, merchant) -> dict:
        return merchant_duplicate_candidates(
            name=data.get("name", ""),
            credit_code=data.get("credit_code"),
            location=data.get("location"),
            exclude_id=merchant.pk if merchant is not None else None,
            user=self.request.user,
        )

    @extend_schema(request=DuplicateCheckSerializer, responses={200: OpenApiTypes.OBJECT})
    @action(detail=False, methods=["post"])
    def duplicates(self, request):
        """Duplicate candidates for a merchant about to be created: by credit code, by phone (of a
        linked person), by similar name within DUPLICATE_RADIUS_M of ``location``. A POST, so a
        phone number never appears in a URL. Candidates outside your scope are only said to exist."""
        if resolve_scope(request.user, "view").empty:
            raise PermissionDenied(_("You do not hold a scope yet."))
        body = DuplicateCheckSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        found = merchant_duplicate_candidates(
            name=data["name"],
            credit_code=data.get("credit_code"),
            phone=data.get("phone"),
            location=data.get("location"),
            exclude_id=data.get("exclude"),
            user=request.user,
        )
        return Response(found)

    # -- ETag / If-Match (offline edits, issue 5) ---------------------------------------------------

    def retrieve(self, request, *args, **kwargs):
        """A merchant, with an ``ETag`` (id + version) to send back as ``If-Match`` when editing."""
        response = super().retrieve(request, *args, **kwargs)
        response["ETag"] = merchant_etag(response.data["id"], response.data["version"])
        return response

    @extend_schema(parameters=[IF_MATCH], responses={200: MerchantSerializer, 412: STALE_RESPONSE})
    def update(self, request, *args, **kwargs):
        """Edit a merchant. With ``If-Match``, only if it is still the version you edited (the row is
        locked while comparing, so two editors of the same version cannot both win)."""
        if_match = request.headers.get("If-Match")
        with transaction.atomic():
            if if_match is not None:
                merchant = self.get_object()
                version = (
                    Merchant.objects.select_for_update(of=("self",))
                    .filter(pk=merchant.pk)
                    .values_list("version", flat=True)
                    .get()
                )
                if not etag_matches(if_match, merchant_etag(merchant.pk, version)):
                    merchant.refresh_from_db()
                    return Response(
                        {
                            "detail": _("Someone changed this merchant meanwhile: review their version."),
                            "current": self.get_serializer(merchant).data,
                        },
                        status=status.HTTP_412_PRECONDITION_FAILED,
                        headers={"ETag": merchant_etag(merchant.pk, merchant.version)},
                    )
            response = super().update(request, *args, **kwargs)
        if response.status_code == status.HTTP_200_OK:
            response["ETag"] = merchant_etag(response.data["id"], response.data["version"])
        return response

    @extend_schema(parameters=[IF_MATCH], responses={200: MerchantSerializer, 412: STALE_RESPONSE})
    def partial_update(self, request, *args, **kwargs):
        return super().partial_update(request, *args, **kwargs)

    # -- My merchants -------------------------------------------------------------------------------

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "ordering",
                str,
                enum=list(ORDERINGS),
                description="last_visit_at (default: never visited first, then the longest ago), "
                "-last_visit_at (the latest first, never visited last) or name.",
            ),
            OpenApiParameter("page", int, description="Page number (from 1)."),
            OpenApiParameter("page_size", int, description=f"Rows per page (1-{MAX_PAGE_SIZE}, default 50)."),
        ],
        responses={200: MyMerchantPageSerializer},
        filters=False,
    )
    @action(detail=False, methods=["get"], url_path="my", filter_backends=[], pagination_class=None)
    def my(self, request):
        """我的商户: the merchants you own within your grids, each with the date of its latest
        visit. Built by PostgreSQL in one statement (crm.selectors.my_merchants)."""
        query = parse_my_merchants_query(request.query_params)
        count, rows = my_merchants_page(user=request.user, query=query)
        if query.page > 1 and (query.page - 1) * query.page_size >= count:
            raise serializers.ValidationError({"page": [_("There is no page %(page)d.") % {"page": query.page}]})
        url = request.build_absolute_uri()
        following = replace_query_param(url, "page", query.page + 1) if query.page * query.page_size < count else None
        if query.page == 1:
            previous = None
        elif query.page == 2:
            previous = remove_query_param(url, "page")
        else:
            previous = replace_query_param(url, "page", query.page - 1)
        head = json.dumps({"count": count, "next": following, "previous": previous}, separators=(",", ":"))
        return HttpResponse(b"".join((head[:-1].encode(), b',"results":', rows, b"}")), content_type="application/json")

    # -- Merchant 360 -------------------------------------------------------------------------------

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def profile(self, request, pk=None):
        """Profile, people (phones masked), products held, open leads with their funnel position,
        and relation counts."""
        merchant = self.get_object()
        return Response(merchant_profile(merchant=merchant, user=request.user))

    @extend_schema(
        parameters=[
            OpenApiParameter("before", str, description="Cursor: the next_before of the previous page."),
            OpenApiParameter("limit", int, description="Items per page (1-100, default 30)."),
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    @action(detail=True, methods=["get"])
    def timeline(self, request, pk=None):
        """Everything that happened to the merchant, newest first: activities (with check-in and
        photos), lead stage changes, ownership changes and edits (and the history of merchants
        merged into it). Paged by time: pass ``next_before`` back as ``before``."""
        limit = parse_limit(request.query_params.get("limit"))
        before = request.query_params.get("before") or None
        if not (pk.isdigit() and len(pk) < 19):
            raise Http404
        # The merchant's visibility (restrict()) is checked inside the timeline's one statement.
        page = merchant_timeline_if_visible(merchant_id=int(pk), user=request.user, before=before, limit=limit)
        if page is None:
            raise Http404
        return Response(page)

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def related(self, request, pk=None):
        """Related merchants (supply chain, guarantee, affiliation, shared key people, family one
        hop). Those outside your scope are only counted (``hidden_count``)."""
        merchant = self.get_object()
        found = related_merchants(merchant=merchant, user=request.user)
        return Response({"visible": found["visible"], "hidden_count": found["hidden_count"]})

    @extend_schema(request=MergeSerializer, responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"])
    def merge(self, request, pk=None):
        """Merge merchant ``drop`` into this one: everything of ``drop`` moves here and ``drop`` is
        closed. Both must be in your change scope."""
        keep = self.get_object()
        body = MergeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        drop = Merchant.objects.restrict(request.user, "change").filter(pk=body.validated_data["drop"]).first()
        if drop is None:
            # The same answer for "does not exist" and "not yours": nothing about other scopes leaks.
            raise serializers.ValidationError({"drop": [_("Merchant not found.")]})
        result = merchants_merge(keep=keep, drop=drop, by=request.user)
        keep.refresh_from_db()
        return Response({**result, "merchant": MerchantSerializer(keep, context=self.get_serializer_context()).data})

    # -- Manual override (issue 3) ------------------------------------------------------------------

    @extend_schema(request=MerchantAssignInputSerializer, responses={200: MerchantAssignmentSerializer})
    @action(detail=True, methods=["post"])
    def assign(self, request, pk=None):
        """A manager's explicit assignment: put the merchant in ``grid`` with ``owner`` and lock it
        (``assignment_locked``): redraws, the ownership rules and the nightly check leave it there.
        ``lock: false`` releases it, as ``unlock`` does. Branch managers and regional heads only
        (403 for the others); the merchant and the grid must be theirs to manage (404 / 400)."""
        merchant = self._merchant_to_assign(request)
        body = MerchantAssignInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        if not data["lock"]:
            return self._assignment_response(self._release(merchant, request.user))
        if drawable_grids(request.user).filter(pk=data["grid"], status=GridStatus.RETIRED).exists():
            raise serializers.ValidationError({"grid": [_("A retired grid cannot take merchants.")]})
        return self._assignment_response(
            self._assign(merchant, request.user, grid=data["grid"], owner=data["owner"], lock=True)
        )

    @extend_schema(request=None, responses={200: MerchantAssignmentSerializer})
    @action(detail=True, methods=["post"])
    def unlock(self, request, pk=None):
        """Release a manual override: the merchant follows its location again (its grid's owner
        stays when the grid does not change; otherwise the new grid's rule gives the owner)."""
        return self._assignment_response(self._release(self._merchant_to_assign(request), request.user))

    def _merchant_to_assign(self, request) -> Merchant:
        # Seen as a change of the merchant (a POST would map to "add"): out of that scope is a 404.
        pk = str(self.kwargs["pk"])
        # A pk that is not a whole number (schemathesis sent "null,null") is simply not found.
        merchant = (
            Merchant.objects.restrict(request.user, "change").filter(pk=int(pk)).first()
            if pk.isdigit() and len(pk) < 19
            else None
        )
        if merchant is None:
            raise Http404
        if not drawable_sub_branches(request.user).exists():
            raise PermissionDenied(_("Only branch managers and regional heads assign merchants by hand."))
        return merchant

    def _release(self, merchant: Merchant, by) -> Merchant:
        owner = merchant.owner_id
        if merchant.grid_id is not None and (owner is None or not _owner_serves_grid(owner, merchant.grid_id)):
            owner = grid_owner_for(grid_id=merchant.grid_id)
        return self._assign(merchant, by, grid=None, owner=owner, lock=False)

    def _assign(self, merchant: Merchant, by, **kwargs) -> Merchant:
        try:
            with transaction.atomic():
                merchant = merchant_assign(merchant=merchant, by=by, **kwargs)
                # Re-check inside the transaction: a release follows the location, which may lie in
                # grids ``by`` does not hold; nobody moves a merchant out of their own scope.
                if not Merchant.objects.restrict(by, "change").filter(pk=merchant.pk).exists():
                    field = "lock" if not kwargs["lock"] else "grid"
                    raise DjangoValidationError(
                        {field: [_("This would move the merchant outside the grids you may work in.")]}
                    )
        except ObjectDoesNotExist:
            raise Http404 from None
        return merchant

    def _assignment_response(self, merchant: Merchant) -> Response:
        merchant = Merchant.objects.select_related("grid").get(pk=merchant.pk)
        return Response(MerchantAssignmentSerializer(merchant, context=self.get_serializer_context()).data)


class MerchantLayerViewSet(LayerViewSet):
    queryset = Merchant.objects.all()
    filterset_class = MerchantFilterSet
    geom_column = "location"
    layer_fields = ["id", "name", "status", "grid_id"]
