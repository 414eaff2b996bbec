from django.core.exceptions import ValidationError as DjangoValidationError
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
        ]
        read_only_fields = ["grid", "created_at", "updated_at"]

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
        try:
            return merchant_save(merchant=merchant, by=self.context["request"].user, fields=validated_data)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(serializers.as_serializer_error(exc)) from None

    def create(self, validated_data):
        return self._save(Merchant(), validated_data)

    def update(self, instance, validated_data):
        return self._save(instance, validated_data)
