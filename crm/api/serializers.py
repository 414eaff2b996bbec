from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.api.fields import BriefField, StrictGeometryField
from crm.models import Industry, Merchant
from crm.services import merchant_save
from grids.models import Place, User


class IndustrySerializer(serializers.ModelSerializer):
    class Meta:
        model = Industry
        fields = ["id", "code", "name_zh", "name_en", "is_key"]


class MerchantSerializer(serializers.ModelSerializer):
    location = StrictGeometryField(geom_types=("Point",))
    grid = BriefField(read_only=True)
    industry = serializers.PrimaryKeyRelatedField(queryset=Industry.objects.all(), required=False, allow_null=True)
    place = serializers.PrimaryKeyRelatedField(queryset=Place.objects.none(), required=False, allow_null=True)
    owner = serializers.PrimaryKeyRelatedField(queryset=User.objects.none(), required=False, allow_null=True)
    # Creating: duplicate candidates answer 409 unless the user has seen them and confirms.
    confirm_not_duplicate = serializers.BooleanField(
        write_only=True,
        required=False,
        default=False,
        help_text=_("Set to true after reviewing the duplicate candidates a 409 answer listed."),
    )

    class Meta:
        model = Merchant
        fields = [
            "id",
            "name",
            "credit_code",
            "industry",
            "location",
            "address",
            "place",
            "grid",
            "owner",
            "status",
            "created_at",
            "updated_at",
            "version",
            "confirm_not_duplicate",
        ]
        # version: the ETag of GET /merchants/{id}/ and the base_version of an offline edit.
        read_only_fields = ["grid", "created_at", "updated_at", "version"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None and request.user.is_authenticated:
            # Dropdowns are restricted too: only places you can see; owners are checked by the service.
            self.fields["place"].queryset = Place.objects.restrict(request.user, "view")
            self.fields["owner"].queryset = User.objects.filter(is_active=True)

    def validate_credit_code(self, value):
        return value or None

    def _save(self, merchant, validated_data):
        validated_data.pop("confirm_not_duplicate", None)
        try:
            return merchant_save(merchant=merchant, by=self.context["request"].user, fields=validated_data)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(serializers.as_serializer_error(exc)) from None

    def create(self, validated_data):
        return self._save(Merchant(), validated_data)

    def update(self, instance, validated_data):
        return self._save(instance, validated_data)


@extend_schema_field(
    {
        "type": "object",
        "description": "A GeoJSON Point in WGS 84.",
        "properties": {
            "type": {"type": "string", "enum": ["Point"]},
            "coordinates": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
        },
        "required": ["type", "coordinates"],
    }
)
class PointInputField(StrictGeometryField):
    """A GeoJSON point on a plain serializer (drf-gis documents geometry on model serializers only)."""

    def __init__(self, **kwargs):
        super().__init__(geom_types=("Point",), **kwargs)


class DuplicateCheckSerializer(serializers.Serializer):
    """What a merchant about to be created looks like (POST body of merchants/duplicates/)."""

    name = serializers.CharField(max_length=200)
    credit_code = serializers.CharField(max_length=18, required=False, allow_blank=True, allow_null=True)
    phone = serializers.CharField(max_length=20, required=False, allow_blank=True, allow_null=True)
    location = PointInputField(required=False, allow_null=True)
    exclude = serializers.IntegerField(min_value=1, max_value=2**63 - 1, required=False, allow_null=True)


class MergeSerializer(serializers.Serializer):
    """POST body of merchants/<id>/merge/: the merchant merged into this one (and closed)."""

    drop = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
