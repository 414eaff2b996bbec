"""API of the lending funnel: leads (stage moves only through ``advance``), their stage changes,
and the funnel report."""

from __future__ import annotations

import datetime
from decimal import Decimal

import django_filters
from django import forms
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpResponse
from django.utils import timezone
from django.utils.translation import gettext as _
from django_filters.fields import IsoDateTimeField
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from core.api.fields import BriefField
from core.api.viewsets import RestrictedViewSetMixin
from core.filters import IdFilter
from crm.choices import LeadStage
from crm.models import Activity, Lead, LeadStageChange, LostReason, Merchant
from crm.selectors.funnel import funnel_report_json
from crm.services.leads import lead_advance_stage, lead_create
from grids.models import Grid, User

#: A report covers at most this many days (a year and a day, for leap years).
MAX_REPORT_DAYS = 366


class EnumField(serializers.ChoiceField):
    """A choice field over a TextChoices, documented as a reference to one enum component named
    after the class (``LeadStageEnum``): the same choice set reused under several field names
    (stage, from_stage, to_stage, advance_to) stays one enum in the schema, without a warning."""

    def __init__(self, enum, **kwargs):
        self.enum = enum
        super().__init__(choices=enum.choices, **kwargs)


class EnumFieldExtension(OpenApiSerializerFieldExtension):
    target_class = EnumField
    match_subclasses = True

    def get_name(self):
        return f"{self.target.enum.__name__}Enum"

    def map_serializer_field(self, auto_schema, direction):
        return {
            "type": "string",
            "enum": list(self.target.enum.values),
            "description": "\n".join(f"* `{value}` - {label}" for value, label in self.target.enum.choices),
        }


def service_call(func, rename: dict[str, str] | None = None, **kwargs):
    """Call a service; its Django ValidationError becomes a DRF 400 whose keys are the API's
    field names (a service says ``merchant`` where the API takes ``merchant_id``)."""
    try:
        return func(**kwargs)
    except DjangoValidationError as exc:
        detail = serializers.as_serializer_error(exc)
        if rename:
            detail = {rename.get(key, key): value for key, value in detail.items()}
        raise serializers.ValidationError(detail) from None


def restricted(request, queryset, action: str = "view"):
    """``queryset`` restricted to what the request's user may ``action`` (none when anonymous)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return queryset.none()
    return queryset.restrict(user, action)


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time, handed to the database in UTC: PostgreSQL refuses offsets beyond
    ±15:59 that Python parses ("-23:05" was a 500), and an edge year can overflow on the way."""

    def to_python(self, value):
        value = super().to_python(value)
        if value is None:
            return None
        try:
            return value.astimezone(datetime.UTC)
        except (OverflowError, ValueError):
            raise forms.ValidationError(_("Enter a valid date/time."), code="invalid") from None


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


class ScopedPrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """An id of a ``model`` row the request's user may ``action``; any other id is "does not
    exist" (nothing tells a user what exists outside their scope). The scope is resolved when the
    field validates input, not when the serializer is built (lists never pay for it)."""

    def __init__(self, *, model, action: str = "view", **kwargs):
        self.scope_model, self.scope_action = model, action
        super().__init__(queryset=model.objects.none(), **kwargs)

    def get_queryset(self):
        return restricted(self.context.get("request"), self.scope_model.objects.all(), self.scope_action)


# -- Leads ------------------------------------------------------------------------------------


class LeadSerializer(serializers.ModelSerializer):
    merchant = BriefField(read_only=True)
    merchant_id = ScopedPrimaryKeyRelatedField(source="merchant", model=Merchant, action="change", write_only=True)
    owner = BriefField(read_only=True, allow_null=True)
    owner_id = serializers.PrimaryKeyRelatedField(
        source="owner", queryset=User.objects.filter(is_active=True), write_only=True, required=False, allow_null=True
    )
    stage = EnumField(LeadStage, read_only=True)
    lost_reason = BriefField(read_only=True, allow_null=True)
    amount_requested = serializers.DecimalField(
        max_digits=14, decimal_places=2, min_value=Decimal("0.01"), required=False, allow_null=True
    )

    class Meta:
        model = Lead
        fields = [
            "id",
            "merchant",
            "merchant_id",
            "product",
            "stage",
            "intent",
            "source",
            "owner",
            "owner_id",
            "amount_requested",
            "amount_approved",
            "amount_disbursed",
            "lost_reason",
            "lost_note",
            "created_at",
            "stage_changed_at",
        ]
        read_only_fields = [
            "stage",
            "amount_approved",
            "amount_disbursed",
            "lost_note",
            "created_at",
            "stage_changed_at",
        ]

    def create(self, validated_data):
        return service_call(
            lead_create,
            rename={"merchant": "merchant_id", "owner": "owner_id"},
            by=self.context["request"].user,
            **validated_data,
        )


class LeadAdvanceSerializer(serializers.Serializer):
    to_stage = EnumField(LeadStage)
    lost_reason = serializers.PrimaryKeyRelatedField(queryset=LostReason.objects.all(), required=False, allow_null=True)
    lost_note = serializers.CharField(max_length=200, required=False, allow_blank=True)
    amount_requested = serializers.DecimalField(
        max_digits=14, decimal_places=2, min_value=Decimal("0.01"), required=False, allow_null=True
    )
    amount_approved = serializers.DecimalField(
        max_digits=14, decimal_places=2, min_value=Decimal("0.01"), required=False, allow_null=True
    )
    amount_disbursed = serializers.DecimalField(
        max_digits=14, decimal_places=2, min_value=Decimal("0.01"), required=False, allow_null=True
    )
    activity = ScopedPrimaryKeyRelatedField(model=Activity, action="change", required=False, allow_null=True)
    at = serializers.DateTimeField(required=False, help_text="When the move happened (default: now).")


class LeadFilterSet(django_filters.FilterSet):
    merchant = IdFilter(field_name="merchant_id")
    owner = IdFilter(field_name="owner_id")

    class Meta:
        model = Lead
        fields = ["stage", "product", "owner", "merchant", "intent"]


class LeadViewSet(RestrictedViewSetMixin, mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Leads (线索/商机). Created here; moved only through ``POST /leads/{id}/advance/``, which
    records a stage change. No PUT/PATCH of the stage, no delete (a dead lead is "lost")."""

    queryset = Lead.objects.select_related("merchant", "owner", "lost_reason")
    serializer_class = LeadSerializer
    filterset_class = LeadFilterSet

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if self.action == "advance":
            self.scope_action = "change"

    @extend_schema(request=LeadAdvanceSerializer, responses={200: LeadSerializer})
    @action(detail=True, methods=["post"])
    def advance(self, request, pk=None):
        """Move the lead to ``to_stage`` (forward, to lost with a reason, or lost back to lead)."""
        lead = self.get_object()
        params = LeadAdvanceSerializer(data=request.data, context=self.get_serializer_context())
        params.is_valid(raise_exception=True)
        lead = service_call(lead_advance_stage, lead=lead, by=request.user, **params.validated_data)
        lead = self.get_queryset().get(pk=lead.pk)
        return Response(LeadSerializer(lead, context=self.get_serializer_context()).data)


# -- Stage changes ----------------------------------------------------------------------------


class LeadStageChangeSerializer(serializers.ModelSerializer):
    lead = BriefField(read_only=True)
    by = BriefField(read_only=True, allow_null=True)
    owner = BriefField(read_only=True, allow_null=True)
    grid = BriefField(read_only=True, allow_null=True)
    from_stage = serializers.CharField(read_only=True, help_text="A stage, or empty when the lead was created.")
    to_stage = EnumField(LeadStage, read_only=True)

    class Meta:
        model = LeadStageChange
        fields = ["id", "lead", "from_stage", "to_stage", "at", "by", "owner", "grid", "activity"]
        read_only_fields = fields


class LeadStageChangeFilterSet(django_filters.FilterSet):
    lead = IdFilter(field_name="lead_id")
    since = UtcDateTimeFilter(field_name="at", lookup_expr="gte")
    until = UtcDateTimeFilter(field_name="at", lookup_expr="lt")

    class Meta:
        model = LeadStageChange
        fields = ["lead", "to_stage"]


class LeadStageChangeViewSet(RestrictedViewSetMixin, viewsets.ReadOnlyModelViewSet):
    """The history of stage moves (read-only: they are written by the lead services only)."""

    queryset = LeadStageChange.objects.select_related("lead__merchant", "by", "owner", "grid")
    serializer_class = LeadStageChangeSerializer
    filterset_class = LeadStageChangeFilterSet


# -- The funnel report ------------------------------------------------------------------------


class FunnelQuerySerializer(serializers.Serializer):
    since = serializers.DateField(required=False, help_text="First day (Asia/Shanghai); default: this month's first.")
    until = serializers.DateField(required=False, help_text="Last day, included; default: today.")
    sub_branch = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    grid = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1), required=False, max_length=500
    )

    def validate(self, attrs):
        today = timezone.localdate()
        since = attrs.get("since") or today.replace(day=1)
        until = attrs.get("until") or today
        if until < since:
            raise serializers.ValidationError({"until": [_("The period ends before it starts.")]})
        if (until - since).days >= MAX_REPORT_DAYS:
            raise serializers.ValidationError(
                {"until": [_("A report covers at most %(days)d days.") % {"days": MAX_REPORT_DAYS}]}
            )
        attrs["since"], attrs["until"] = since, until
        return attrs


class _Counts(serializers.Serializer):
    lead = serializers.IntegerField()
    contacted = serializers.IntegerField()
    visited = serializers.IntegerField()
    interested = serializers.IntegerField()
    applied = serializers.IntegerField()
    approved = serializers.IntegerField()
    disbursed = serializers.IntegerField()
    lost = serializers.IntegerField()


class _ActivityCounts(serializers.Serializer):
    visit = serializers.IntegerField()
    call = serializers.IntegerField()
    event = serializers.IntegerField()


class FunnelGridRowSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The grid's id.")
    name = serializers.CharField()
    code = serializers.CharField()
    stages = _Counts()
    activities = _ActivityCounts()


@extend_schema_serializer(many=False)
class FunnelReportSerializer(serializers.Serializer):
    since = serializers.DateField()
    until = serializers.DateField()
    stages = _Counts(help_text="Stage changes into each stage in the period.")
    activities = _ActivityCounts(help_text="Activities logged in the period, by kind.")
    results = FunnelGridRowSerializer(many=True, help_text="One row per grid that had anything.")


class FunnelReportViewSet(RestrictedViewSetMixin, viewsets.GenericViewSet):
    """漏斗报表: leads reaching each stage and activity volume, for the grids the user may view,
    per grid and in total, over a period of days (Asia/Shanghai)."""

    queryset = Grid.objects.all()
    serializer_class = FunnelReportSerializer
    pagination_class = None
    filter_backends: list = []

    @extend_schema(
        parameters=[FunnelQuerySerializer],
        responses={200: FunnelReportSerializer},
    )
    def list(self, request, *args, **kwargs):
        query = {key: request.query_params.get(key) for key in ("since", "until", "sub_branch")}
        query = {key: value for key, value in query.items() if value not in (None, "")}
        if "grid" in request.query_params:
            query["grid"] = request.query_params.getlist("grid")
        params = FunnelQuerySerializer(data=query)
        params.is_valid(raise_exception=True)
        since, until = params.validated_data["since"], params.validated_data["until"]
        zone = timezone.get_default_timezone()
        # The document is built by PostgreSQL (crm.selectors.funnel) and passed through as bytes:
        # FunnelReportSerializer documents it; running it over the rows cost more than the query.
        body = funnel_report_json(
            user=request.user,
            sub_branch_id=params.validated_data.get("sub_branch"),
            grid_ids=params.validated_data.get("grid"),
            since=datetime.datetime.combine(since, datetime.time.min, tzinfo=zone),
            until=datetime.datetime.combine(until + datetime.timedelta(days=1), datetime.time.min, tzinfo=zone),
            since_day=since,
            until_day=until,
        )
        return HttpResponse(body, content_type="application/json")
