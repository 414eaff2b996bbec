"""People (owners, legal representatives, shareholders, controllers, contacts) over the API.

Scope: a person is seen by whoever sees a merchant the person is linked to (grids.scoping). Only the
links to merchants the user can see are listed. Phone and ID numbers are always masked here; a user
holding ``crm.view_pii`` reads them through ``GET people/<id>/pii/``, which logs the access."""

import django_filters
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Prefetch
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from core.api.fields import BriefField
from core.api.viewsets import RestrictedModelViewSet
from core.filters import IdFilter
from crm.choices import PersonRole
from crm.models import Merchant, MerchantPerson, Person
from crm.pii import PII_FIELDS, mask_id_number, mask_phone
from crm.services.people import person_pii_reveal, person_save


class MaskedField(serializers.CharField):
    """Written in full, always read masked."""

    def __init__(self, *, masker, **kwargs):
        self.masker = masker
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_blank", True)
        super().__init__(**kwargs)

    def to_representation(self, value):
        return self.masker(value)


@extend_schema_field(
    {
        "type": "string",
        "pattern": "^(" + "|".join(PersonRole.values) + ")$",
        "description": "One of: " + ", ".join(PersonRole.values),
    }
)
class PersonRoleInput(serializers.ChoiceField):
    """A person's role at a merchant, written. Documented by a pattern: an enum here would be a second
    component with a choice set named ``role``, colliding with the grid roles (a settings entry
    ENUM_NAME_OVERRIDES["PersonRoleEnum"] would allow the enum)."""

    def __init__(self, **kwargs):
        super().__init__(choices=PersonRole.choices, **kwargs)


class PersonLinkSerializer(serializers.ModelSerializer):
    merchant = BriefField(read_only=True)

    class Meta:
        model = MerchantPerson
        fields = ["id", "merchant", "role", "title", "share_pct"]


class PersonSerializer(serializers.ModelSerializer):
    phone = MaskedField(masker=mask_phone, max_length=32, help_text=_("Masked in answers (138****5678)."))
    id_number = MaskedField(masker=mask_id_number, max_length=32, help_text=_("Masked in answers."))
    links = PersonLinkSerializer(many=True, read_only=True, source="visible_links")
    # Writing: link the person to a merchant (required when creating).
    merchant = serializers.PrimaryKeyRelatedField(queryset=Merchant.objects.none(), write_only=True, required=False)
    role = PersonRoleInput(write_only=True, required=False)
    share_pct = serializers.DecimalField(
        max_digits=5, decimal_places=2, min_value=0, max_value=100, write_only=True, required=False, allow_null=True
    )
    title = serializers.CharField(max_length=50, write_only=True, required=False, allow_blank=True)

    class Meta:
        model = Person
        fields = ["id", "name", "phone", "id_number", "links", "created_at", "merchant", "role", "share_pct", "title"]
        read_only_fields = ["created_at"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None and request.user.is_authenticated:
            # Only merchants the user may change can receive a person.
            self.fields["merchant"].queryset = Merchant.objects.restrict(request.user, "change")

    def validate(self, attrs):
        if self.instance is None and "merchant" not in attrs:
            raise serializers.ValidationError({"merchant": [_("A new person must be linked to a merchant.")]})
        if "merchant" in attrs and "role" not in attrs:
            raise serializers.ValidationError({"role": [_("Choose the person's role at the merchant.")]})
        return attrs

    def _save(self, person, data):
        link = {k: data.pop(k) for k in ("merchant", "role", "share_pct", "title") if k in data}
        try:
            return person_save(person=person, by=self.context["request"].user, fields=data, **link)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(serializers.as_serializer_error(exc)) from None

    def create(self, validated_data):
        return self._save(Person(), validated_data)

    def update(self, instance, validated_data):
        return self._save(instance, validated_data)

    def to_representation(self, instance):
        if not hasattr(instance, "visible_links"):
            # After a write: the links the user may see, fetched like the list does.
            instance.visible_links = list(
                MerchantPerson.objects.restrict(self.context["request"].user)
                .filter(person=instance)
                .select_related("merchant")
            )
        return super().to_representation(instance)


class PersonFilterSet(django_filters.FilterSet):
    # By merchant id only: no filter by phone, ID number or name (personal data stays out of URLs).
    merchant = IdFilter(method="filter_merchant")

    class Meta:
        model = Person
        fields = ["merchant"]

    def filter_merchant(self, queryset, name, value):
        return queryset.filter(pk__in=MerchantPerson.objects.filter(merchant_id=value).values("person_id"))


class PersonViewSet(RestrictedModelViewSet):
    queryset = Person.objects.all()
    serializer_class = PersonSerializer
    filterset_class = PersonFilterSet
    # People are not deleted through the API (their history, PII access log and links stay).
    http_method_names = ["get", "post", "put", "patch", "head", "options"]

    def get_queryset(self):
        links = MerchantPerson.objects.restrict(self.request.user).select_related("merchant").order_by("id")
        visible = Prefetch("merchant_links", queryset=links, to_attr="visible_links")
        return super().get_queryset().prefetch_related(visible)

    @extend_schema(
        parameters=[
            OpenApiParameter("fields", str, description="Comma-separated: phone, id_number (default both)."),
            OpenApiParameter("merchant", int, description="The merchant page this was opened from (for the log)."),
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    @action(detail=True, methods=["get"])
    def pii(self, request, pk=None):
        """The unmasked phone and ID number, for users holding ``crm.view_pii``. Every call is
        logged (PiiAccess: who, whom, which fields, when); the answer is never cached."""
        person = self.get_object()
        raw = request.query_params.get("fields") or ",".join(PII_FIELDS)
        fields = [f.strip() for f in raw.split(",") if f.strip()]
        merchant = request.query_params.get("merchant", "")
        context = f"merchant:{merchant}" if merchant.isdigit() and len(merchant) < 19 else "api"
        values = person_pii_reveal(person=person, by=request.user, fields=fields, context=context)
        response = Response({"id": person.pk, **values})
        response["Cache-Control"] = "no-store"
        return response
