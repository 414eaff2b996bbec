from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers
from rest_framework_gis.fields import GeometryField

from core.geo import parse_geojson_geometry


class StrictGeometryField(GeometryField):
    """GeoJSON in and out. Input is validated by core.geo (never handed to GDAL): 2-D, inside
    China, valid rings, a vertex cap, no ``crs``. drf-gis provides output and the schema."""

    def __init__(self, *, geom_types=("Point",), **kwargs):
        self.geom_types = tuple(geom_types)
        super().__init__(**kwargs)

    def to_internal_value(self, value):
        try:
            return parse_geojson_geometry(value, self.geom_types)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None


class BriefField(serializers.Serializer):
    """A nested object in its brief form: {id, display}."""

    id = serializers.IntegerField(read_only=True)
    display = serializers.CharField(source="__str__", read_only=True)
