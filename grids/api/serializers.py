from django.contrib.gis.geos import GEOSException, GEOSGeometry, MultiPolygon
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.api.fields import BriefField, StrictGeometryField
from core.geo import parse_geojson_geometry
from grids.choices import ChannelRole, GridKind, OwnershipRule
from grids.models import (
    Branch,
    ChannelContact,
    Grid,
    GridVersion,
    Membership,
    Place,
    RedrawProposal,
    SubBranch,
    User,
)


class UserBriefSerializer(serializers.ModelSerializer):
    display = serializers.CharField(source="__str__", read_only=True)

    class Meta:
        model = User
        fields = ["id", "username", "display"]


class BranchSerializer(serializers.ModelSerializer):
    class Meta:
        model = Branch
        fields = ["id", "name", "code"]


class SubBranchSerializer(serializers.ModelSerializer):
    branch = BriefField(read_only=True)
    location = StrictGeometryField(read_only=True)

    class Meta:
        model = SubBranch
        fields = ["id", "name", "code", "branch", "color", "location"]


class GridSerializer(serializers.ModelSerializer):
    sub_branch = BriefField(read_only=True)

    class Meta:
        model = Grid
        fields = ["id", "name", "code", "kind", "status", "sub_branch"]


class GridDetailSerializer(GridSerializer):
    geom = StrictGeometryField(read_only=True, geom_types=("MultiPolygon",))

    class Meta(GridSerializer.Meta):
        fields = [*GridSerializer.Meta.fields, "geom"]


class PlaceSerializer(serializers.ModelSerializer):
    grid = BriefField(read_only=True)
    geom = StrictGeometryField(read_only=True, geom_types=("Point", "Polygon", "MultiPolygon"))

    class Meta:
        model = Place
        fields = ["id", "name", "kind", "grid", "geom"]


class MembershipSerializer(serializers.ModelSerializer):
    user = UserBriefSerializer(read_only=True)
    branch = BriefField(read_only=True)
    sub_branch = BriefField(read_only=True)
    grid = BriefField(read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "user", "role", "branch", "sub_branch", "grid", "start_date", "end_date"]


# -- Territory (issue 3) ---------------------------------------------------------------------------

BOUNDARY_TYPES = ("Polygon", "MultiPolygon")


@extend_schema_field(
    {
        "type": "object",
        "description": "A GeoJSON geometry in WGS 84 (no crs member), 2-D, inside China.",
        "properties": {"type": {"type": "string"}, "coordinates": {"type": "array", "items": {}}},
        "required": ["type", "coordinates"],
    }
)
class GeoJSONInputField(StrictGeometryField):
    """StrictGeometryField for plain (non-model) input serializers, with its schema spelled out.

    A boundary that is well formed but not valid (a self-intersection, a ring touching itself) is
    passed on: every service taking it starts with ``validate_boundary``, whose 400 carries
    PostGIS's reason and the spot (``[lon, lat]``) for the map; a bare "invalid" here could not."""

    def to_internal_value(self, value):
        try:
            return parse_geojson_geometry(value, self.geom_types)
        except DjangoValidationError as exc:
            geom = _well_formed(value, self.geom_types)
            if geom is None or geom.valid:
                raise serializers.ValidationError(exc.messages) from None
            return geom


def _well_formed(data, allowed_types):
    """``data`` as GEOS when only its validity (not its structure) is wrong, else None. The same
    structural checks as core.geo: only numbers reach GEOS."""
    from core.geo import ALLOWED_MEMBERS, _polygon

    if not isinstance(data, dict) or "crs" in data or set(data) - ALLOWED_MEMBERS:
        return None
    gtype, coords, counter = data.get("type"), data.get("coordinates"), [0]
    if gtype not in allowed_types:
        return None
    try:
        if gtype == "Polygon":
            return _polygon(coords, "coordinates", counter)
        if gtype == "MultiPolygon" and isinstance(coords, list) and coords:
            return MultiPolygon(*[_polygon(p, f"coordinates[{i}]", counter) for i, p in enumerate(coords)], srid=4326)
    except (DjangoValidationError, GEOSException):
        return None
    return None


@extend_schema_field(
    {
        "type": "object",
        "description": "A GeoJSON LineString in WGS 84, 2-D, inside China.",
        "properties": {"type": {"type": "string"}, "coordinates": {"type": "array", "items": {}}},
        "required": ["type", "coordinates"],
    }
)
class LineInputField(serializers.Field):
    """A GeoJSON LineString (the split line), checked like every geometry input (core.geo): only
    numbers reach GEOS, never a string for GDAL."""

    def to_internal_value(self, data):
        from django.conf import settings
        from django.contrib.gis.geos import LineString
        from django.core.exceptions import ValidationError as DjangoValidationError

        from core.geo import _position

        if not isinstance(data, dict) or data.get("type") != "LineString" or set(data) - {"type", "coordinates"}:
            raise serializers.ValidationError(_("Expected a GeoJSON LineString."))
        coords = data.get("coordinates")
        if not isinstance(coords, list) or not 2 <= len(coords) <= settings.GEO_MAX_VERTICES:
            raise serializers.ValidationError(_("A line needs at least 2 positions."))
        try:
            points = [_position(p, f"coordinates[{i}]") for i, p in enumerate(coords)]
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None
        return LineString(points, srid=4326)

    def to_representation(self, value):
        return {"type": "LineString", "coordinates": [list(c) for c in value.coords]}


def _pattern_field(choices_cls, **kwargs):
    """A choice documented by a pattern: an enum would collide with other choice sets of the same
    field name (kind, status, role) in the schema."""

    @extend_schema_field(
        {
            "type": "string",
            "pattern": "^(" + "|".join(choices_cls.values) + ")$",
            "description": "One of: " + ", ".join(choices_cls.values),
        }
    )
    class _Field(serializers.ChoiceField):
        def __init__(self, **kw):
            super().__init__(choices=choices_cls.choices, **kw)

    return _Field(**kwargs)


class GridCreateSerializer(serializers.Serializer):
    sub_branch = serializers.IntegerField(min_value=1, max_value=2**31 - 1)
    name = serializers.CharField(max_length=100)
    code = serializers.CharField(max_length=30)
    kind = serializers.ChoiceField(choices=GridKind.choices, default=GridKind.MIXED)
    ownership_rule = serializers.ChoiceField(choices=OwnershipRule.choices, default=OwnershipRule.LEADER)
    geom = GeoJSONInputField(geom_types=BOUNDARY_TYPES)
    accept_overlaps = serializers.BooleanField(default=False, help_text=_("Save even if it overlaps sibling grids."))
    note = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class GridUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False)
    code = serializers.CharField(max_length=30, required=False)
    kind = serializers.ChoiceField(choices=GridKind.choices, required=False)
    ownership_rule = serializers.ChoiceField(choices=OwnershipRule.choices, required=False)
    leader = serializers.IntegerField(min_value=1, max_value=2**31 - 1, required=False)
    note = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class GridFullSerializer(GridDetailSerializer):
    class Meta(GridDetailSerializer.Meta):
        fields = [*GridDetailSerializer.Meta.fields, "ownership_rule", "version"]


class GridCreatePreviewSerializer(GridCreateSerializer):
    trim_neighbours = serializers.BooleanField(
        default=True, help_text=_("Sibling grids give up the area the new grid covers.")
    )
    leader = serializers.IntegerField(
        min_value=1,
        max_value=2**31 - 1,
        required=False,
        allow_null=True,
        help_text=_("The new grid's leader (a user id), kept on the proposal and appointed when it is applied."),
    )
    accept_overlaps = None
    ownership_rule = None

    def validate_leader(self, value):
        # As the team endpoint (grids.services.team): any active user; apply checks it again.
        if value is not None and not User.objects.filter(pk=value, is_active=True).exists():
            raise serializers.ValidationError(_("Unknown or inactive user."))
        return value


class RedrawInputSerializer(serializers.Serializer):
    geom = GeoJSONInputField(geom_types=BOUNDARY_TYPES)
    note = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class SplitInputSerializer(serializers.Serializer):
    line = LineInputField(required=False)
    polygons = serializers.ListField(
        child=GeoJSONInputField(geom_types=("Polygon",)), min_length=2, max_length=2, required=False
    )
    new_name = serializers.CharField(max_length=100)
    new_code = serializers.CharField(max_length=30)
    note = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")

    def validate(self, attrs):
        if ("line" in attrs) == ("polygons" in attrs):
            raise serializers.ValidationError({"line": [_("Give either a line or two polygons.")]})
        return attrs


class MergeInputSerializer(serializers.Serializer):
    grid_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**31 - 1), min_length=2, max_length=50
    )
    note = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class ApplyInputSerializer(serializers.Serializer):
    accept_overlaps = serializers.BooleanField(default=False)


class TeamInputSerializer(serializers.Serializer):
    leader = serializers.IntegerField(min_value=1, max_value=2**31 - 1, required=False, allow_null=True)
    account_managers = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**31 - 1), required=False, max_length=100
    )


class TeamBulkItemSerializer(TeamInputSerializer):
    grid = serializers.IntegerField(min_value=1, max_value=2**31 - 1)


class TeamBulkSerializer(serializers.Serializer):
    assignments = TeamBulkItemSerializer(many=True)


class GridVersionSerializer(serializers.ModelSerializer):
    geom = StrictGeometryField(read_only=True, geom_types=("MultiPolygon",))
    created_by = UserBriefSerializer(read_only=True)

    class Meta:
        model = GridVersion
        fields = ["id", "number", "name", "code", "kind", "status", "created_by", "created_at", "note", "geom"]


class RedrawProposalSerializer(serializers.ModelSerializer):
    kind = serializers.CharField(read_only=True, help_text="redraw, split, merge or create")
    status = serializers.CharField(read_only=True, help_text="proposed, applied or discarded")
    sub_branch = BriefField(read_only=True)
    grid = BriefField(read_only=True)
    created_by = UserBriefSerializer(read_only=True)

    class Meta:
        model = RedrawProposal
        fields = [
            "id",
            "kind",
            "status",
            "sub_branch",
            "grid",
            "note",
            "summary",
            "overlaps",
            "created_by",
            "created_at",
            "decided_at",
        ]


class RedrawProposalDetailSerializer(RedrawProposalSerializer):
    """The diff: the moves table (from grid + owner → to grid + owner), the places, the proposed
    boundaries and the moving merchants as GeoJSON for the map."""

    moves = serializers.SerializerMethodField()
    places = serializers.SerializerMethodField()
    shapes = serializers.SerializerMethodField()
    merchants_geojson = serializers.SerializerMethodField()

    class Meta(RedrawProposalSerializer.Meta):
        fields = [*RedrawProposalSerializer.Meta.fields, "moves", "places", "shapes", "merchants_geojson"]

    def _label(self, obj, key):
        if key is None:
            return None
        info = obj.summary.get("grids", {}).get(str(key), {})
        return {"id": key if key < (1 << 40) else None, "code": info.get("code", ""), "name": info.get("name", "")}

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_moves(self, obj):
        users = {u["user_id"]: u["display"] for u in obj.summary.get("per_owner", [])}
        return [
            {
                "merchant_id": m["id"],
                "name": m["name"],
                "from_grid": self._label(obj, m["from_grid"]),
                "to_grid": self._label(obj, m["to_grid"]),
                "from_owner": {"id": m["from_owner"], "display": users.get(m["from_owner"], "")}
                if m["from_owner"]
                else None,
                "to_owner": {"id": m["to_owner"], "display": users.get(m["to_owner"], "")} if m["to_owner"] else None,
                "locked": m["locked"],
            }
            for m in obj.merchant_moves
        ]

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_places(self, obj):
        return [
            {
                "place_id": p["id"],
                "name": p["name"],
                "from_grid": self._label(obj, p["from_grid"]),
                "to_grid": self._label(obj, p["to_grid"]),
            }
            for p in obj.place_moves
        ]

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_shapes(self, obj):
        import json

        features = []
        for s in obj.shapes:
            geom = json.loads(GEOSGeometry(s["geom"]).json) if s["geom"] else None
            props = {"grid_id": s["grid_id"], "retire": s["geom"] is None, **self._label(obj, s["key"])}
            if s.get("leader"):
                props["leader"] = s["leader"]
            features.append({"type": "Feature", "geometry": geom, "properties": props})
        return {"type": "FeatureCollection", "features": features}

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_merchants_geojson(self, obj):
        return {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [m["lon"], m["lat"]]},
                    "properties": {
                        "id": m["id"],
                        "name": m["name"],
                        "from_grid": m["from_grid"],
                        "to_grid": m["to_grid"],
                        "locked": m["locked"],
                    },
                }
                for m in obj.merchant_moves
            ],
        }


class MaskedPhoneField(serializers.CharField):
    """Written in full; read masked unless the user may view personal data (crm.pii)."""

    def to_representation(self, value):
        from crm.pii import can_view_pii, mask_phone

        request = self.context.get("request")
        if request is not None and can_view_pii(request.user):
            return value
        return mask_phone(value)

    def to_internal_value(self, data):
        from django.core.exceptions import ValidationError as DjangoValidationError

        from crm.pii import validate_phone

        value = super().to_internal_value(data)
        try:
            return validate_phone(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None


class ChannelContactSerializer(serializers.ModelSerializer):
    grid = serializers.PrimaryKeyRelatedField(queryset=Grid.objects.none())
    place = serializers.PrimaryKeyRelatedField(queryset=Place.objects.none(), required=False, allow_null=True)
    phone = MaskedPhoneField(max_length=20, required=False, allow_blank=True)
    role = _pattern_field(ChannelRole, required=False)

    class Meta:
        model = ChannelContact
        fields = [
            "id",
            "grid",
            "place",
            "name",
            "organisation",
            "role",
            "title",
            "phone",
            "notes",
            "active",
            "created_at",
        ]
        read_only_fields = ["created_at"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            # Only grids and places the user sees can be chosen: an unknown id and one out of
            # scope give the same error.
            self.fields["grid"].queryset = Grid.objects.restrict(request.user, "view")
            self.fields["place"].queryset = Place.objects.restrict(request.user, "view")

    def validate(self, attrs):
        grid = attrs.get("grid") or getattr(self.instance, "grid", None)
        place = attrs.get("place")
        if place is not None and grid is not None and place.grid_id != grid.pk:
            raise serializers.ValidationError({"place": [_("The place is not in this grid.")]})
        return attrs


class PlaceWithCountsSerializer(PlaceSerializer):
    merchants_all = serializers.IntegerField(read_only=True)
    merchants_banked = serializers.IntegerField(read_only=True)
    merchants_with_loan = serializers.IntegerField(read_only=True)

    class Meta(PlaceSerializer.Meta):
        fields = [*PlaceSerializer.Meta.fields, "merchants_all", "merchants_banked", "merchants_with_loan"]


class CoverageQuerySerializer(serializers.Serializer):
    level = serializers.ChoiceField(choices=[("grid", "grid"), ("sub_branch", "sub_branch")], default="grid")
    sub_branch = serializers.IntegerField(min_value=1, max_value=2**31 - 1, required=False)
    ordering = serializers.ChoiceField(
        choices=[
            (f"{sign}{k}", f"{sign}{k}")
            for k in (
                "id",
                "name",
                "merchants",
                "in_grid_rate",
                "visited_30_rate",
                "visited_90_rate",
                "never_visited",
                "never_visited_rate",
            )
            for sign in ("", "-")
        ],
        required=False,
    )
