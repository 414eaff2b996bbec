"""factory-boy factories. Grids are 0.01-degree squares laid out on a line, so they never overlap."""

import datetime

import factory
from django.contrib.gis.geos import MultiPolygon, Point, Polygon
from factory.django import DjangoModelFactory

from crm.models import Merchant
from grids.models import Branch, Grid, Membership, Place, SubBranch, User

ORIGIN = (120.10, 30.20)
CELL = 0.01


def cell(n: int) -> tuple[float, float, float, float]:
    x0 = ORIGIN[0] + (n % 20) * CELL
    y0 = ORIGIN[1] + (n // 20) * CELL
    return (x0, y0, x0 + CELL, y0 + CELL)


class UserFactory(DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    full_name = factory.Faker("name", locale="zh_CN")
    password = factory.PostGenerationMethodCall("set_password", "pw")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):  # noqa: N805
        if create:
            obj.save()


class BranchFactory(DjangoModelFactory):
    class Meta:
        model = Branch

    name = factory.Sequence(lambda n: f"分行{n}")
    code = factory.Sequence(lambda n: f"B{n:03d}")


class SubBranchFactory(DjangoModelFactory):
    class Meta:
        model = SubBranch

    branch = factory.SubFactory(BranchFactory)
    name = factory.Sequence(lambda n: f"支行{n}")
    code = factory.Sequence(lambda n: f"S{n:04d}")


class GridFactory(DjangoModelFactory):
    class Meta:
        model = Grid

    sub_branch = factory.SubFactory(SubBranchFactory)
    name = factory.Sequence(lambda n: f"网格{n}")
    code = factory.Sequence(lambda n: f"G{n:05d}")
    geom = factory.Sequence(lambda n: MultiPolygon(Polygon.from_bbox(cell(n)), srid=4326))


class PlaceFactory(DjangoModelFactory):
    class Meta:
        model = Place

    name = factory.Sequence(lambda n: f"园区{n}")
    kind = "park"
    grid = factory.SubFactory(GridFactory)
    geom = factory.LazyAttribute(lambda o: o.grid.geom.point_on_surface)


class MembershipFactory(DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    role = "account_manager"
    start_date = datetime.date(2024, 1, 1)


class MerchantFactory(DjangoModelFactory):
    """A merchant at its grid's centre (grid set directly; services set it from the location)."""

    class Meta:
        model = Merchant

    name = factory.Faker("company", locale="zh_CN")
    grid = factory.SubFactory(GridFactory)
    location = factory.LazyAttribute(
        lambda o: Point(*o.grid.geom.centroid.coords, srid=4326) if o.grid else Point(*ORIGIN, srid=4326)
    )
