"""Offline sync API for the account manager's tablet (issue 5).

* ``GET  /api/v1/sync/working-set/``  what the device stores (crm.selectors.working_set): JSON built
  by PostgreSQL, gzip-compressed when the client accepts it, with a weak ETag; ``If-None-Match``
  with that ETag answers 304 and no body. Wide scopes name their grids: ``?grid=1,2``.
* ``POST /api/v1/sync/``              the outbox, up to 200 items, one answer per item
  (crm.services.sync: idempotent by client UUID; a rejected item writes nothing and loses no other).
* ``POST /api/v1/sync/photos/``       one photo (multipart), idempotent by its client UUID.
* ``GET  /api/v1/sync/status/``       server time and who is logged in: cheap, for the app to notice
  an expired login (401/403 JSON, never a redirect to the HTML login page).

gzip and BREACH: the working set reflects nothing from the request (only validated grid ids) and
carries no secret token, so compressing it does not expose a secret to a chosen-plaintext attack.
"""

from __future__ import annotations

from django.http import HttpResponse, HttpResponseNotModified
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.views.decorators.gzip import gzip_page
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from core.api.viewsets import RestrictedViewSetMixin
from crm.api.activities import UploadedFileField
from crm.api.funnel import EnumField
from crm.api.views import etag_matches
from crm.choices import PhotoKind
from crm.models import Activity
from crm.selectors.working_set import parse_grid_ids, working_set, working_set_grids
from crm.services.sync import MAX_ITEMS, TYPES, parse_batch, sync_batch, sync_photo

# -- Documentation of the shapes (the bodies themselves are built by the service / PostgreSQL) -----


class SyncUserSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    full_name = serializers.CharField()


class SyncStatusSerializer(serializers.Serializer):
    server_time = serializers.DateTimeField()
    user = SyncUserSerializer()


class WorkingSetGridSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    code = serializers.CharField()
    name = serializers.CharField()
    geom = serializers.JSONField(help_text="GeoJSON MultiPolygon, WGS 84.")


class WorkingSetMerchantSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    address = serializers.CharField()
    status = serializers.CharField()
    grid = serializers.IntegerField(allow_null=True)
    owner = serializers.IntegerField(allow_null=True)
    lat = serializers.FloatField()
    lon = serializers.FloatField()
    version = serializers.IntegerField(help_text="Send it back as base_version when editing offline.")
    last_visit_at = serializers.DateTimeField(allow_null=True)
    industry = serializers.IntegerField(allow_null=True)


class WorkingSetLeadSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    merchant = serializers.IntegerField()
    product = serializers.CharField()
    stage = serializers.CharField()
    intent = serializers.CharField()
    amount_requested = serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True)


class WorkingSetTaskSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    merchant = serializers.IntegerField(allow_null=True)
    title = serializers.CharField()
    due_at = serializers.DateTimeField()
    status = serializers.CharField()
    owner = serializers.IntegerField()


class WorkingSetSerializer(serializers.Serializer):
    generated_at = serializers.DateTimeField()
    user = SyncUserSerializer()
    grids = WorkingSetGridSerializer(many=True)
    merchants = WorkingSetMerchantSerializer(many=True)
    leads = WorkingSetLeadSerializer(many=True)
    tasks = WorkingSetTaskSerializer(many=True)
    choices = serializers.JSONField(
        help_text="Lists of [value, label]: stages, outcomes, intent, photo_kinds, activity_kinds, products, "
        "task_statuses, checkin_flags; industries as [id, name]."
    )


class SyncItemSerializer(serializers.Serializer):
    client_uuid = serializers.UUIDField()
    type = serializers.ChoiceField(choices=[(t, t) for t in TYPES])
    device_time = serializers.DateTimeField()
    payload = serializers.JSONField(
        help_text="activity: merchant (or merchant_client_uuid), kind, occurred_at, notes, outcome, intent, "
        "next_step, next_due_at, checkin {lat, lon, accuracy_m}, advance_lead, advance_to. "
        "merchant_create: name, location {lat, lon}, address, industry, credit_code, phone. "
        "merchant_update: merchant, base_version, fields {...}."
    )


class SyncBatchSerializer(serializers.Serializer):
    items = SyncItemSerializer(many=True, help_text=f"At most {MAX_ITEMS}.")


class SyncItemResultSerializer(serializers.Serializer):
    client_uuid = serializers.UUIDField()
    status = serializers.ChoiceField(choices=[(s, s) for s in ("created", "duplicate", "rejected", "conflict")])
    id = serializers.IntegerField(allow_null=True)
    errors = serializers.JSONField(allow_null=True, help_text="{field: [messages]} of a rejected or conflicting item.")
    server = serializers.JSONField(allow_null=True, help_text="The server's copy (merchants: a working-set row).")
    warnings = serializers.JSONField(allow_null=True, help_text="e.g. {duplicates: {...}} for a merchant created.")


class SyncBatchResultSerializer(serializers.Serializer):
    received_at = serializers.DateTimeField()
    results = SyncItemResultSerializer(many=True)


class SyncPhotoSerializer(serializers.Serializer):
    client_uuid = serializers.UUIDField(help_text="The photo's own UUID (idempotency).")
    activity_client_uuid = serializers.UUIDField(required=False, allow_null=True, help_text="The visit's item UUID.")
    activity = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=2**63 - 1, help_text="Or the visit's server id."
    )
    kind = EnumField(PhotoKind, default=PhotoKind.STOREFRONT)
    file = UploadedFileField(allow_empty_file=False, help_text="JPEG, PNG or WebP.")

    def validate(self, attrs):
        if attrs.get("activity_client_uuid") is None and attrs.get("activity") is None:
            raise serializers.ValidationError({"activity": [_("Say which visit: activity_client_uuid or activity.")]})
        return attrs


# -- The endpoints -----------------------------------------------------------------------------------


def _user(user) -> dict:
    return {"id": user.pk, "username": user.username, "full_name": getattr(user, "full_name", "")}


class SyncViewSet(RestrictedViewSetMixin, viewsets.GenericViewSet):
    """Offline sync for the tablet: working set down, outbox up (see the module docstring).
    Everything goes through restrict(): the working set is restricted, every item is written by
    the services that re-check the scope inside their transaction."""

    queryset = Activity.objects.all()
    pagination_class = None
    filter_backends = []
    serializer_class = SyncBatchSerializer

    @extend_schema(request=SyncBatchSerializer, responses={200: SyncBatchResultSerializer})
    def create(self, request, *args, **kwargs):
        """Send the outbox: ``{"items": [{client_uuid, type, device_time, payload}, ...]}``. Answers
        200 with one result per item, in order; a malformed batch is a 400 naming the field
        (``items``, ``items[3].client_uuid``) and writes nothing."""
        items = parse_batch(request.data)
        received_at = timezone.now()
        results = sync_batch(request=request, items=items)
        return Response({"received_at": received_at, "results": results})

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "grid",
                str,
                description="Grid ids, comma separated. Required when your scope is wider than grid teams "
                "(branch manager, regional head); default: the grids you are a member of.",
            ),
            OpenApiParameter("If-None-Match", str, OpenApiParameter.HEADER, description="The ETag of your copy."),
        ],
        responses={200: WorkingSetSerializer, 304: OpenApiResponse(description="Your copy is current.")},
        filters=False,
    )
    @action(detail=False, methods=["get"], url_path="working-set")
    @method_decorator(gzip_page)
    def working_set(self, request):
        """The working set: your grids, their merchants, open leads, open follow-ups, and the choice
        lists, built by PostgreSQL in one statement."""
        grid_ids = working_set_grids(user=request.user, requested=parse_grid_ids(request.query_params.get("grid")))
        found = working_set(user=request.user, grid_ids=grid_ids)
        if_none_match = request.headers.get("If-None-Match")
        if if_none_match and etag_matches(if_none_match, found.etag):
            response = HttpResponseNotModified()
        else:
            response = HttpResponse(found.body, content_type="application/json")
        response["ETag"] = found.etag
        response["Cache-Control"] = "private, no-cache"
        return response

    @extend_schema(
        request={"multipart/form-data": SyncPhotoSerializer},
        responses={200: SyncItemResultSerializer},
    )
    @action(detail=False, methods=["post"], parser_classes=[MultiPartParser])
    def photos(self, request):
        """One photo of a visit taken offline (multipart). Idempotent by ``client_uuid``; answers
        200 with the same result shape as a batch item (``rejected`` with the reason, e.g. the
        visit has not been sent yet: send it first)."""
        params = SyncPhotoSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        result = sync_photo(
            request=request,
            client_uuid=data["client_uuid"],
            uploaded_file=data["file"],
            kind=data["kind"],
            activity_id=data.get("activity"),
            activity_client_uuid=data.get("activity_client_uuid"),
        )
        return Response(result, status=status.HTTP_200_OK)

    @extend_schema(responses={200: SyncStatusSerializer})
    @action(detail=False, methods=["get"], url_path="status")
    def sync_status(self, request):
        """Server time and the logged-in user (no database query beyond the login itself)."""
        return Response({"server_time": timezone.now(), "user": _user(request.user)})
