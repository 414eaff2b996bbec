import copy

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.forms.utils import ErrorDict, ErrorList
from django.utils.datastructures import MultiValueDict
from django_filters.filters import QuerySetRequestMixin

from core.filters import BBoxFilter, IdFilter
from grids.models import ChannelContact, Grid, Membership, Place, RedrawProposal, SubBranch


class LeanFilterSet(django_filters.FilterSet):
    """A FilterSet that validates and filters exactly as django-filter's does (each filter's form
    field cleans its parameter; the same errors; the filters applied in order), without what that
    costs on every request: a deep copy of every filter, a new form class, and a form deep-copying
    every field again (~0.5 ms, most of a map layer's own Python time).

    The filters are copied once per class (as django-filter copies them per request, with the
    model set: the same field labels) and shared by all requests: they keep no request state. A
    filterset whose filters need one (``method=``, querysets per request) or with its own form
    class gets django-filter's per-request copies instead. ``base_filters`` are left as they are
    (the OpenAPI schema reads them); ``form`` (the browsable API's) is built only when asked for."""

    def __init__(self, data=None, queryset=None, *, request=None, prefix=None):
        shared = type(self)._shared_filters()
        self._lean_mode = shared is not None
        if not self._lean_mode:
            super().__init__(data, queryset, request=request, prefix=prefix)
            return
        if queryset is None:
            queryset = self._meta.model._default_manager.all()
        self.is_bound = data is not None
        self.data = data or MultiValueDict()
        self.queryset = queryset
        self.request = request
        self.form_prefix = prefix
        self.filters = shared

    @classmethod
    def _shared_filters(cls) -> dict | None:
        if "_lean_filters" not in cls.__dict__:
            shared = copy.deepcopy(cls.base_filters)
            for f in shared.values():
                f.model = cls._meta.model
            lean = cls._meta.form is forms.Form and not any(
                f.method is not None or isinstance(f, QuerySetRequestMixin) or f.field.disabled for f in shared.values()
            )
            cls._lean_filters = shared if lean else None
        return cls._lean_filters

    def _clean(self) -> tuple[dict, ErrorDict]:
        """What the form's ``cleaned_data`` and ``errors`` would be (a plain Form's full_clean)."""
        if not hasattr(self, "_cleaned"):
            cleaned, errors = {}, ErrorDict()
            for name, filter_ in self.filters.items():
                field = filter_.field
                key = f"{self.form_prefix}-{name}" if self.form_prefix else name
                try:
                    cleaned[name] = field.clean(field.widget.value_from_datadict(self.data, {}, key))
                except ValidationError as exc:
                    errors[name] = ErrorList(exc.error_list)
            self._cleaned = cleaned, errors
        return self._cleaned

    def is_valid(self):
        if not self._lean_mode:
            return super().is_valid()
        return self.is_bound and not self._clean()[1]

    @property
    def errors(self):
        if not self._lean_mode:
            return super().errors
        return self._clean()[1]

    def filter_queryset(self, queryset):
        if not self._lean_mode:
            return super().filter_queryset(queryset)
        for name, value in self._clean()[0].items():
            queryset = self.filters[name].filter(queryset, value)
        return queryset


class SubBranchFilterSet(django_filters.FilterSet):
    branch = IdFilter(field_name="branch_id")

    class Meta:
        model = SubBranch
        fields = ["branch"]


class GridFilterSet(LeanFilterSet):
    bbox = BBoxFilter(field_name="geom")
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains")
    sub_branch = IdFilter(field_name="sub_branch_id")

    class Meta:
        model = Grid
        fields = ["sub_branch", "kind", "status"]


class PlaceFilterSet(LeanFilterSet):
    bbox = BBoxFilter(field_name="geom")
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains")
    grid = IdFilter(field_name="grid_id")

    class Meta:
        model = Place
        fields = ["grid", "kind"]


class MembershipFilterSet(django_filters.FilterSet):
    user = IdFilter(field_name="user_id")
    grid = IdFilter(field_name="grid_id")
    sub_branch = IdFilter(field_name="sub_branch_id")
    branch = IdFilter(field_name="branch_id")

    class Meta:
        model = Membership
        fields = ["user", "role", "grid", "sub_branch", "branch"]


class RedrawProposalFilterSet(django_filters.FilterSet):
    grid = IdFilter(field_name="grid_id")
    sub_branch = IdFilter(field_name="sub_branch_id")

    class Meta:
        model = RedrawProposal
        fields = ["grid", "sub_branch", "status", "kind"]


class ChannelContactFilterSet(django_filters.FilterSet):
    grid = IdFilter(field_name="grid_id")
    place = IdFilter(field_name="place_id")
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains")

    class Meta:
        model = ChannelContact
        fields = ["grid", "place", "role", "active"]
