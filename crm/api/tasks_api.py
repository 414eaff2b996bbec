"""Notifications (the in-app reminder list) and handovers (管户移交).

Both go through restrict(): a notification is its user's own (grids.scoping "own"), a handover is
seen by whoever applied it ("handover"). Marking read acts on the caller's own rows only. Writes
go through crm.services.tasks and crm.services.handover."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import BooleanField, Count, ExpressionWrapper, Q
from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from core.api.fields import BriefField
from core.api.viewsets import RestrictedViewSetMixin
from crm.models import Handover, HandoverItem, Notification
from crm.services.handover import handover_apply, handover_preview, handover_scope
from crm.services.tasks import notifications_mark_read
from grids.api.serializers import UserBriefSerializer
from grids.models import User

# -- Notifications --------------------------------------------------------------------------------


class NotificationTaskSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    title = serializers.CharField(read_only=True)
    due_at = serializers.DateTimeField(read_only=True)
    status = serializers.CharField(read_only=True)
    merchant = BriefField(read_only=True, allow_null=True)


class NotificationSerializer(serializers.ModelSerializer):
    event = serializers.CharField(read_only=True)
    event_display = serializers.CharField(source="get_event_display", read_only=True)
    task = NotificationTaskSerializer(read_only=True)
    unread = serializers.SerializerMethodField()
    overdue = serializers.SerializerMethodField()

    class Meta:
        model = Notification
        fields = ["id", "event", "event_display", "task", "created_at", "read_at", "emailed_at", "unread", "overdue"]
        read_only_fields = fields

    def get_unread(self, obj) -> bool:
        return obj.read_at is None

    def get_overdue(self, obj) -> bool:
        """The task is still open and its due time has passed (now, not when notified)."""
        return obj.task.status == "open" and obj.task.due_at < self.context.get("now", timezone.now())


class NotificationViewSet(RestrictedViewSetMixin, viewsets.ReadOnlyModelViewSet):
    """The caller's reminders, unread first, newest first within each."""

    queryset = Notification.objects.select_related("task", "task__merchant")
    serializer_class = NotificationSerializer

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        # Reading a reminder is not a change to business data: a read-only role marks its own too.
        self.scope_action = "view"

    def get_queryset(self):
        unread = ExpressionWrapper(Q(read_at__isnull=True), output_field=BooleanField())
        return super().get_queryset().alias(unread=unread).order_by("-unread", "-created_at", "-id")

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "now": timezone.now()}

    @extend_schema(request=None, responses=NotificationSerializer)
    @action(detail=True, methods=["post"])
    def read(self, request, pk=None):
        notification = self.get_object()
        if notification.user_id != request.user.pk:
            # An administrator's scope shows everyone's reminders; marking read is for one's own.
            return Response({"detail": _("Not found.")}, status=status.HTTP_404_NOT_FOUND)
        notifications_mark_read(user=request.user, notification=notification)
        notification.refresh_from_db(fields=["read_at"])
        return Response(self.get_serializer(notification).data)

    @extend_schema(request=None, responses=inline_serializer("ReadAll", {"marked": serializers.IntegerField()}))
    @action(detail=False, methods=["post"], url_path="read-all")
    def read_all(self, request):
        return Response({"marked": notifications_mark_read(user=request.user)})

    @extend_schema(responses=inline_serializer("UnreadCount", {"unread": serializers.IntegerField()}))
    @action(detail=False, methods=["get"], url_path="unread-count")
    def unread_count(self, request):
        count = self.get_queryset().filter(user_id=request.user.pk, read_at__isnull=True).count()
        return Response({"unread": count})


# -- Handovers -------------------------------------------------------------------------------------


class HandoverItemSerializer(serializers.ModelSerializer):
    kind = serializers.SerializerMethodField()
    merchant = BriefField(read_only=True, allow_null=True)
    lead = BriefField(read_only=True, allow_null=True)
    task = BriefField(read_only=True, allow_null=True)
    to_user = UserBriefSerializer(read_only=True)

    class Meta:
        model = HandoverItem
        fields = ["id", "kind", "merchant", "lead", "task", "to_user"]

    def get_kind(self, obj) -> str:
        return "merchant" if obj.merchant_id else "lead" if obj.lead_id else "task"


class HandoverSerializer(serializers.ModelSerializer):
    from_user = UserBriefSerializer(read_only=True)
    by = UserBriefSerializer(read_only=True)
    merchant_count = serializers.IntegerField(read_only=True)
    lead_count = serializers.IntegerField(read_only=True)
    task_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Handover
        fields = [
            "id",
            "from_user",
            "by",
            "created_at",
            "applied_at",
            "end_memberships",
            "note",
            "merchant_count",
            "lead_count",
            "task_count",
        ]


class HandoverDetailSerializer(HandoverSerializer):
    items = HandoverItemSerializer(many=True, read_only=True)

    class Meta(HandoverSerializer.Meta):
        fields = [*HandoverSerializer.Meta.fields, "items"]


def _user(value, field: str) -> User:
    # One answer for "no such user" and "not yours to name": ids are not probed through errors.
    user = User.objects.filter(pk=value).first()
    if user is None:
        raise serializers.ValidationError({field: [_("Unknown person, or outside your scope.")]})
    return user


class HandoverCreateSerializer(serializers.Serializer):
    """Either ``to_user`` (one receiver for everything) or ``by_grid`` ({grid id: user id})."""

    from_user = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    to_user = serializers.IntegerField(min_value=1, max_value=2**63 - 1, required=False, allow_null=True)
    by_grid = serializers.DictField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1), required=False, allow_empty=False
    )
    end_memberships = serializers.BooleanField(default=True)
    note = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")

    def validate_by_grid(self, value):
        out = {}
        for key, user_id in value.items():
            if not (str(key).isascii() and str(key).isdigit()) or not 0 < int(key) < 2**63:
                raise serializers.ValidationError(_("Keys are grid ids."))
            out[int(key)] = user_id
        return out

    def validate(self, attrs):
        if attrs.get("to_user") is not None and attrs.get("by_grid"):
            raise serializers.ValidationError({"to_user": [_("Give either to_user or by_grid, not both.")]})
        attrs["from_user"] = _user(attrs["from_user"], "from_user")
        if attrs.get("by_grid"):
            users = {u.pk: u for u in User.objects.filter(pk__in=set(attrs["by_grid"].values()))}
            if len(users) != len(set(attrs["by_grid"].values())):
                raise serializers.ValidationError({"by_grid": [_("Unknown person, or outside your scope.")]})
            attrs["assignments"] = {grid: users[uid] for grid, uid in attrs["by_grid"].items()}
        elif attrs.get("to_user") is not None:
            attrs["assignments"] = _user(attrs["to_user"], "to_user")
        else:
            attrs["assignments"] = None
        return attrs


_brief = {"id": serializers.IntegerField(), "display": serializers.CharField()}
HandoverPreviewSerializer = inline_serializer(
    "HandoverPreview",
    {
        "from_user": UserBriefSerializer(),
        "merchant_count": serializers.IntegerField(),
        "lead_count": serializers.IntegerField(),
        "task_count": serializers.IntegerField(),
        "memberships_to_end": serializers.ListField(child=inline_serializer("HandoverMembership", _brief)),
        "grids": serializers.ListField(
            child=inline_serializer(
                "HandoverPreviewGrid",
                {
                    "grid": inline_serializer("HandoverGridBrief", _brief, allow_null=True),
                    "merchants": serializers.ListField(child=inline_serializer("HandoverMerchant", _brief)),
                    "leads": serializers.ListField(child=inline_serializer("HandoverLead", _brief)),
                    "tasks": serializers.ListField(child=inline_serializer("HandoverTask", _brief)),
                    "members": UserBriefSerializer(many=True),
                },
            )
        ),
    },
)


def _briefs(objs) -> list[dict]:
    return [{"id": o.pk, "display": str(o)} for o in objs]


def preview_data(book) -> dict:
    return {
        "from_user": UserBriefSerializer(book.from_user).data,
        "merchant_count": book.merchant_count,
        "lead_count": book.lead_count,
        "task_count": book.task_count,
        "memberships_to_end": _briefs(book.memberships),
        "grids": [
            {
                "grid": {"id": g.grid.pk, "display": str(g.grid)} if g.grid else None,
                "merchants": _briefs(g.merchants),
                "leads": _briefs(g.leads),
                "tasks": _briefs(g.tasks),
                "members": UserBriefSerializer(g.members, many=True).data,
            }
            for g in book.grids
        ],
    }


class HandoverViewSet(
    RestrictedViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Handovers the caller applied; ``preview`` shows a person's book, POST applies a handover."""

    queryset = Handover.objects.select_related("from_user", "by")

    def get_queryset(self):
        qs = (
            super()
            .get_queryset()
            .annotate(
                merchant_count=Count("items", filter=Q(items__merchant__isnull=False)),
                lead_count=Count("items", filter=Q(items__lead__isnull=False)),
                task_count=Count("items", filter=Q(items__task__isnull=False)),
            )
            .order_by("-created_at", "-id")  # Meta.ordering is not applied to a GROUP BY query
        )
        if self.action == "retrieve":
            qs = qs.prefetch_related("items__merchant", "items__lead__merchant", "items__task", "items__to_user")
        return qs

    def get_serializer_class(self):
        if self.action == "retrieve":
            return HandoverDetailSerializer
        if self.action == "create":
            return HandoverCreateSerializer
        return HandoverSerializer

    @extend_schema(request=HandoverCreateSerializer, responses={201: HandoverDetailSerializer})
    def create(self, request, *args, **kwargs):
        handover_scope(by=request.user)  # 403 before looking at the body: grid members hand over nobody
        serializer = HandoverCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            handover = handover_apply(
                from_user=data["from_user"],
                by=request.user,
                assignments=data["assignments"],
                end_memberships=data["end_memberships"],
                note=data["note"],
            )
        except DjangoValidationError as exc:
            raise serializers.ValidationError(serializers.as_serializer_error(exc)) from None
        self.scope_action = "view"
        handover = self.get_queryset().get(pk=handover.pk)
        return Response(HandoverDetailSerializer(handover, context={"request": request}).data, status=201)

    @extend_schema(
        parameters=[OpenApiParameter("from_user", OpenApiTypes.INT, required=True)],
        responses=HandoverPreviewSerializer,
    )
    @action(detail=False, methods=["get"])
    def preview(self, request):
        handover_scope(by=request.user)
        field = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
        try:
            from_user_id = field.run_validation(request.query_params.get("from_user"))
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({"from_user": exc.detail}) from None
        from_user = _user(from_user_id, "from_user")
        try:
            book = handover_preview(from_user=from_user, by=request.user)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(serializers.as_serializer_error(exc)) from None
        return Response(preview_data(book))
