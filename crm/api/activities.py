"""API of touches: activities (visits with check-in, calls, events), their photos, and the
follow-up tasks they create. JSON everywhere except the photo upload (multipart, that action only)."""

from __future__ import annotations

import django_filters
from django.db.models import Prefetch, Q
from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from core.api.fields import BriefField, StrictGeometryField
from core.api.viewsets import RestrictedViewSetMixin
from core.filters import IdFilter
from crm.api.funnel import EnumField, ScopedPrimaryKeyRelatedField, UtcDateTimeFilter, service_call
from crm.choices import LeadStage, PhotoKind
from crm.models import Activity, ActivityPhoto, EventAttendance, Lead, Merchant, Person, Task
from crm.services.activities import activity_checkout, activity_log, task_complete
from crm.services.photos import photo_attach
from grids.models import Grid
from grids.scoping import resolve_scope, scope_q

# -- Activities -------------------------------------------------------------------------------


class AttendeeSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=[("merchant", "merchant"), ("person", "person")])
    id = serializers.IntegerField()
    display = serializers.CharField()


class ActivitySerializer(serializers.ModelSerializer):
    merchant = BriefField(read_only=True, allow_null=True)
    merchant_id = ScopedPrimaryKeyRelatedField(
        source="merchant",
        model=Merchant,
        action="change",
        write_only=True,
        required=False,
        allow_null=True,
        help_text="The merchant of a visit or call.",
    )
    grid = BriefField(read_only=True)
    grid_id = ScopedPrimaryKeyRelatedField(
        source="grid",
        model=Grid,
        action="change",
        write_only=True,
        required=False,
        allow_null=True,
        help_text="The grid of an event (a visit or call takes its merchant's grid).",
    )
    by = BriefField(read_only=True)
    checkin = StrictGeometryField(
        source="checkin_location",
        geom_types=("Point",),
        required=False,
        allow_null=True,
        help_text="The device's position at check-in (GeoJSON Point, WGS 84).",
    )
    checkin_accuracy_m = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=1e6)
    duration_s = serializers.SerializerMethodField(help_text="Check-in to check-out, in seconds.")
    attendees = serializers.SerializerMethodField()
    attendee_merchant_ids = ScopedPrimaryKeyRelatedField(many=True, model=Merchant, write_only=True, required=False)
    attendee_person_ids = ScopedPrimaryKeyRelatedField(many=True, model=Person, write_only=True, required=False)
    next_due_at = serializers.DateTimeField(
        write_only=True, required=False, allow_null=True, help_text="With next_step: creates a follow-up task."
    )
    advance_lead_id = ScopedPrimaryKeyRelatedField(
        model=Lead, action="change", write_only=True, required=False, allow_null=True
    )
    advance_to = EnumField(LeadStage, write_only=True, required=False, allow_null=True)

    class Meta:
        model = Activity
        fields = [
            "id",
            "kind",
            "merchant",
            "merchant_id",
            "grid",
            "grid_id",
            "by",
            "occurred_at",
            "title",
            "event_type",
            "notes",
            "outcome",
            "intent",
            "next_step",
            "next_due_at",
            "checkin",
            "checkin_accuracy_m",
            "checkin_distance_m",
            "checkin_flag",
            "checkout_at",
            "duration_s",
            "attendees",
            "attendee_merchant_ids",
            "attendee_person_ids",
            "advance_lead_id",
            "advance_to",
            "client_uuid",
            "device_time",
            "received_at",
        ]
        read_only_fields = ["checkin_distance_m", "checkin_flag", "received_at"]
        extra_kwargs = {"occurred_at": {"required": False}}

    @extend_schema_field(OpenApiTypes.INT)
    def get_duration_s(self, obj) -> int | None:
        if obj.checkout_at is None:
            return None
        return int((obj.checkout_at - obj.occurred_at).total_seconds())

    @extend_schema_field(AttendeeSerializer(many=True))
    def get_attendees(self, obj):
        # Prefetched by the viewset, filtered to attendees the reader may see.
        rows = getattr(obj, "visible_attendance", None)
        if rows is None:
            rows = obj.attendance.select_related("merchant", "person")
        out = []
        for row in rows:
            if row.merchant_id:
                out.append({"type": "merchant", "id": row.merchant_id, "display": str(row.merchant)})
            if row.person_id:
                out.append({"type": "person", "id": row.person_id, "display": str(row.person)})
        return out

    def create(self, validated_data):
        data = dict(validated_data)
        attendees = [*data.pop("attendee_merchant_ids", []), *data.pop("attendee_person_ids", [])]
        return service_call(
            activity_log,
            rename={"merchant": "merchant_id", "grid": "grid_id", "advance_lead": "advance_lead_id"},
            by=self.context["request"].user,
            kind=data.pop("kind"),
            merchant=data.pop("merchant", None),
            grid=data.pop("grid", None),
            checkin=data.pop("checkin_location", None),
            advance_lead=data.pop("advance_lead_id", None),
            advance_to=data.pop("advance_to", None) or None,
            attendees=attendees,
            **{key: value for key, value in data.items() if value is not None},
        )


class ActivityCheckoutSerializer(serializers.Serializer):
    at = serializers.DateTimeField(required=False, help_text="Check-out time (default: now).")


class ActivityFilterSet(django_filters.FilterSet):
    merchant = IdFilter(field_name="merchant_id")
    grid = IdFilter(field_name="grid_id")
    by = IdFilter(field_name="by_id")
    since = UtcDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    until = UtcDateTimeFilter(field_name="occurred_at", lookup_expr="lt")

    class Meta:
        model = Activity
        fields = ["kind", "merchant", "grid", "by", "checkin_flag", "since", "until"]


class ActivityViewSet(RestrictedViewSetMixin, mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """走访 / 电话 / 活动. Logged through one service (check-in distance in the database, follow-up
    task, funnel move in the same step). Activities are history: no edit, no delete; a visit is
    checked out of through ``POST /activities/{id}/checkout/``."""

    queryset = Activity.objects.select_related("merchant", "grid", "by")
    serializer_class = ActivitySerializer
    filterset_class = ActivityFilterSet

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if self.action == "checkout":
            self.scope_action = "change"

    def get_queryset(self):
        queryset = super().get_queryset()
        # Attendees the reader cannot see are left out (an event never reveals another scope).
        # One scope resolution for both rules (restrict() would resolve it once per model).
        user = self.request.user
        scope = resolve_scope(user, "view")
        merchants, persons = Q(), Q()
        if (q := scope_q(Merchant, user, "view", scope=scope)) is not None:
            merchants = Q(merchant__isnull=True) | Q(merchant__in=Merchant.objects.filter(q).values("pk"))
        if (q := scope_q(Person, user, "view", scope=scope)) is not None:
            persons = Q(person__isnull=True) | Q(person__in=Person.objects.filter(q).values("pk"))
        visible = EventAttendance.objects.filter(merchants, persons).select_related("merchant", "person")
        return queryset.prefetch_related(Prefetch("attendance", queryset=visible, to_attr="visible_attendance"))

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        activity = serializer.save()
        # Read back through the restricted queryset (with the reader's view of the attendees).
        out = self.get_serializer(self.get_queryset().get(pk=activity.pk))
        return Response(out.data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ActivityCheckoutSerializer, responses={200: ActivitySerializer})
    @action(detail=True, methods=["post"])
    def checkout(self, request, pk=None):
        """Check out of a visit: sets the check-out time, which gives the visit's duration."""
        activity = self.get_object()
        params = ActivityCheckoutSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        service_call(activity_checkout, activity=activity, by=request.user, **params.validated_data)
        return Response(self.get_serializer(self.get_object()).data)


# -- Photos -----------------------------------------------------------------------------------


class PhotoSerializer(serializers.ModelSerializer):
    activity = BriefField(read_only=True)
    merchant = BriefField(source="activity.merchant", read_only=True, allow_null=True)
    kind = EnumField(PhotoKind, read_only=True)
    exif_location = StrictGeometryField(read_only=True, allow_null=True)
    file_url = serializers.HyperlinkedIdentityField(view_name="api:photo-file")

    class Meta:
        model = ActivityPhoto
        fields = [
            "id",
            "activity",
            "merchant",
            "kind",
            "content_type",
            "size",
            "exif_location",
            "exif_taken_at",
            "uploaded_at",
            "file_url",
        ]
        read_only_fields = fields


@extend_schema_field({"type": "string", "format": "binary"})
class UploadedFileField(serializers.FileField):
    """A file in a multipart body (documented as binary: the request schema is not split)."""


class PhotoUploadSerializer(serializers.Serializer):
    activity = ScopedPrimaryKeyRelatedField(model=Activity, action="change", help_text="A visit or call.")
    kind = EnumField(PhotoKind, default=PhotoKind.STOREFRONT)
    file = UploadedFileField(allow_empty_file=False, help_text="JPEG, PNG or WebP.")


class PhotoFilterSet(django_filters.FilterSet):
    activity = IdFilter(field_name="activity_id")
    merchant = IdFilter(field_name="activity__merchant_id")

    class Meta:
        model = ActivityPhoto
        fields = ["activity", "merchant", "kind"]


class PhotoViewSet(RestrictedViewSetMixin, mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Photos of visits and calls. Upload: ``multipart/form-data`` on create only (the rest of the
    API is JSON only). The file itself: ``GET /photos/{id}/file/``, for those who can see the
    merchant; storage paths are never exposed."""

    queryset = ActivityPhoto.objects.select_related("activity__merchant").order_by("-uploaded_at", "-id")
    serializer_class = PhotoSerializer
    filterset_class = PhotoFilterSet

    def _current_action(self):
        name = getattr(self, "action", None)
        if name is None and getattr(self, "request", None) is not None:
            name = getattr(self, "action_map", {}).get(self.request.method.lower())
        return name

    def get_parsers(self):
        # Called before ``self.action`` is set: resolve the action from the method.
        if self._current_action() == "create":
            return [MultiPartParser()]
        return super().get_parsers()

    def get_serializer_class(self):
        if self._current_action() == "create":
            return PhotoUploadSerializer
        return PhotoSerializer

    @extend_schema(request={"multipart/form-data": PhotoUploadSerializer}, responses={201: PhotoSerializer})
    def create(self, request, *args, **kwargs):
        params = PhotoUploadSerializer(data=request.data, context=self.get_serializer_context())
        params.is_valid(raise_exception=True)
        photo = service_call(
            photo_attach,
            by=request.user,
            activity=params.validated_data["activity"],
            kind=params.validated_data["kind"],
            uploaded_file=params.validated_data["file"],
        )
        photo = ActivityPhoto.objects.select_related("activity__merchant").get(pk=photo.pk)
        return Response(PhotoSerializer(photo, context=self.get_serializer_context()).data, status=201)

    @extend_schema(responses={(200, "image/*"): OpenApiTypes.BINARY})
    @action(detail=True, methods=["get"])
    def file(self, request, pk=None):
        """The image itself, streamed from storage."""
        photo = self.get_object()
        try:
            handle = photo.file.open("rb")
        except (FileNotFoundError, OSError):
            raise Http404 from None
        extension = {"image/png": "png", "image/webp": "webp"}.get(photo.content_type, "jpg")
        response = FileResponse(handle, content_type=photo.content_type, filename=f"photo-{photo.pk}.{extension}")
        response["Cache-Control"] = "private, max-age=3600"
        return response


# -- Tasks ------------------------------------------------------------------------------------


class TaskSerializer(serializers.ModelSerializer):
    owner = BriefField(read_only=True)
    merchant = BriefField(read_only=True, allow_null=True)

    class Meta:
        model = Task
        fields = ["id", "title", "due_at", "status", "done_at", "owner", "merchant", "activity", "lead", "created_at"]
        read_only_fields = fields


class TaskFilterSet(django_filters.FilterSet):
    due_before = UtcDateTimeFilter(field_name="due_at", lookup_expr="lt")
    mine = django_filters.BooleanFilter(method="filter_mine", help_text="Only my own tasks.")
    owner = IdFilter(field_name="owner_id")
    merchant = IdFilter(field_name="merchant_id")

    class Meta:
        model = Task
        fields = ["status", "due_before", "mine", "owner", "merchant"]

    def filter_mine(self, queryset, name, value):
        if value is None:
            return queryset
        user_id = getattr(self.request, "user", None) and self.request.user.pk
        return queryset.filter(owner_id=user_id) if value else queryset.exclude(owner_id=user_id)


class TaskViewSet(RestrictedViewSetMixin, viewsets.ReadOnlyModelViewSet):
    """Follow-ups visible to the user (``?mine=true``: their own). Created from an activity's
    next step; completed through ``POST /tasks/{id}/complete/``."""

    queryset = Task.objects.select_related("owner", "merchant")
    serializer_class = TaskSerializer
    filterset_class = TaskFilterSet

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if self.action == "complete":
            self.scope_action = "change"

    @extend_schema(request=None, responses={200: TaskSerializer})
    @action(detail=True, methods=["post"])
    def complete(self, request, pk=None):
        """Mark the task done."""
        task = self.get_object()
        service_call(task_complete, task=task, by=request.user)
        return Response(self.get_serializer(self.get_object()).data)
