import django_filters
from django import forms
from django.contrib.gis.geos import Polygon
from django.core.exceptions import ValidationError

from core.geo import parse_bbox


class BBoxFormField(forms.CharField):
    def clean(self, value):
        value = super().clean(value)
        if not value:
            return None
        try:
            return parse_bbox(value)
        except ValidationError as exc:
            raise forms.ValidationError(exc.messages) from None


class BBoxFilter(django_filters.Filter):
    """``?bbox=minlon,minlat,maxlon,maxlat``: rows whose geometry's box overlaps it (GiST ``&&``).
    Parsed to four floats first: no query-string text reaches a spatial lookup."""

    field_class = BBoxFormField

    def filter(self, qs, value):
        if not value:
            return qs
        return qs.filter(**{f"{self.field_name}__bboverlaps": Polygon.from_bbox(value)})


class IdFilter(django_filters.NumberFilter):
    """A foreign key filtered by id without checking the id exists: a "not a valid choice" error
    would tell a user which ids exist outside their scope; an unknown id just matches nothing."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", 2**63 - 1)
        super().__init__(*args, **kwargs)
