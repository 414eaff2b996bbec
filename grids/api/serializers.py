from rest_framework import serializers

from core.api.fields import BriefField, StrictGeometryField
from grids.models import Branch, Grid, Membership, Place, SubBranch, User


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
