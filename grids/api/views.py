import functools

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.http import Http404
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, mixins, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.layers import LayerViewSet
from core.api.viewsets import RestrictedModelViewSet, RestrictedReadOnlyViewSet, RestrictedViewSetMixin
from grids import selectors
from grids.api.errors import TERRITORY_400, territory_errors
from grids.api.serializers import (
    ApplyInputSerializer,
    BranchSerializer,
    ChannelContactSerializer,
    CoverageQuerySerializer,
    GridCreatePreviewSerializer,
    GridCreateSerializer,
    GridFullSerializer,
    GridSerializer,
    GridUpdateSerializer,
    GridVersionSerializer,
    MembershipSerializer,
    MergeInputSerializer,
    PlaceWithCountsSerializer,
    RedrawInputSerializer,
    RedrawProposalDetailSerializer,
    RedrawProposalSerializer,
    SplitInputSerializer,
    SubBranchSerializer,
    TeamBulkSerializer,
    TeamInputSerializer,
)
from grids.filtersets import (
    ChannelContactFilterSet,
    GridFilterSet,
    MembershipFilterSet,
    PlaceFilterSet,
    RedrawProposalFilterSet,
    SubBranchFilterSet,
)
from grids.models import Branch, ChannelContact, Grid, GridVersion, Membership, Place, RedrawProposal, SubBranch
from grids.services import coverage, redraw, territory
from grids.services import team as team_svc
from grids.services._scope import drawable_grids, drawable_sub_branches


class BranchViewSet(RestrictedReadOnlyViewSet):
    queryset = Branch.objects.all()
    serializer_class = BranchSerializer


class SubBranchViewSet(RestrictedReadOnlyViewSet):
    queryset = SubBranch.objects.select_related("branch")
    serializer_class = SubBranchSerializer
    filterset_class = SubBranchFilterSet

    @extend_schema(responses={200: OpenApiTypes.OBJECT}, filters=False)
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def gaps(self, request, pk=None):
        """Holes in the coverage of the sub-branch's grids, as GeoJSON with their area (m²)."""
        return Response(coverage.gaps(sub_branch=self.get_object()))


class GridViewSet(RestrictedViewSetMixin, mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Grids. Everyone reads the grids in their scope; branch managers (their sub-branch) and
    regional heads (their branch) draw: create, PATCH metadata, redraw / split / merge through a
    previewed proposal, staff the team, retire (no hard delete). Grid leaders and account managers
    cannot draw: their writes answer 403 (create) or 404 (a grid they do not manage)."""

    queryset = Grid.objects.select_related("sub_branch")
    filterset_class = GridFilterSet
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self):
        if self.request.method in ("GET", "HEAD", "OPTIONS"):
            return super().get_queryset()
        # Writes: only grids the user may draw (404 for the others, as for any write out of scope).
        return drawable_grids(self.request.user).select_related("sub_branch")

    def get_serializer_class(self):
        if self.action == "list":
            return GridSerializer
        return GridFullSerializer

    @extend_schema(request=GridCreateSerializer, responses={201: GridFullSerializer, 400: TERRITORY_400})
    @territory_errors
    def create(self, request, *args, **kwargs):
        if not drawable_sub_branches(request.user).exists():
            raise exceptions.PermissionDenied(_("You may not draw grids."))
        data = _valid(GridCreateSerializer, request)
        sub_branch = drawable_sub_branches(request.user).filter(pk=data["sub_branch"]).first()
        if sub_branch is None:
            if not SubBranch.objects.restrict(request.user).filter(pk=data["sub_branch"]).exists():
                raise exceptions.ValidationError({"sub_branch": [_("Unknown sub-branch.")]})
            raise exceptions.PermissionDenied(_("You may not draw grids in this sub-branch."))
        grid = _call(
            territory.grid_create,
            by=request.user,
            sub_branch=sub_branch,
            **{k: data[k] for k in ("name", "code", "kind", "ownership_rule", "geom", "accept_overlaps", "note")},
        )
        return Response(GridFullSerializer(grid, context=self.get_serializer_context()).data, status=201)

    @extend_schema(request=GridUpdateSerializer, responses={200: GridFullSerializer})
    def partial_update(self, request, *args, **kwargs):
        grid = self.get_object()
        data = _valid(GridUpdateSerializer, request)
        leader = data.pop("leader", None)
        grid = _call(territory.grid_update, grid=grid, by=request.user, leader=leader, **data)
        return Response(GridFullSerializer(grid, context=self.get_serializer_context()).data)

    @extend_schema(request=None, responses={200: GridFullSerializer})
    @action(detail=True, methods=["post"])
    def retire(self, request, pk=None):
        """Retire the grid (kept with its history; it stops taking merchants)."""
        grid = _call(territory.grid_retire, grid=self.get_object(), by=request.user)
        return Response(GridFullSerializer(grid, context=self.get_serializer_context()).data)

    @extend_schema(request=RedrawInputSerializer, responses={201: RedrawProposalDetailSerializer, 400: TERRITORY_400})
    @action(detail=True, methods=["post"])
    @territory_errors
    def redraw(self, request, pk=None):
        """Preview a new boundary: the proposal lists the merchants and places that would move."""
        data = _valid(RedrawInputSerializer, request)
        proposal = _call(
            redraw.redraw_preview, grid=self.get_object(), new_geom=data["geom"], by=request.user, note=data["note"]
        )
        return _proposal_response(self, proposal)

    @extend_schema(request=SplitInputSerializer, responses={201: RedrawProposalDetailSerializer, 400: TERRITORY_400})
    @action(detail=True, methods=["post"])
    @territory_errors
    def split(self, request, pk=None):
        """Preview splitting the grid in two (by a line, or by two polygons)."""
        data = _valid(SplitInputSerializer, request)
        proposal = _call(
            redraw.grid_split,
            grid=self.get_object(),
            by=request.user,
            line=data.get("line"),
            polygons=data.get("polygons"),
            new_name=data["new_name"],
            new_code=data["new_code"],
            note=data["note"],
        )
        return _proposal_response(self, proposal)

    @extend_schema(request=MergeInputSerializer, responses={201: RedrawProposalDetailSerializer, 400: TERRITORY_400})
    @action(detail=False, methods=["post"])
    @territory_errors
    def merge(self, request):
        """Preview merging grids of one sub-branch (the lowest id keeps its identity)."""
        data = _valid(MergeInputSerializer, request)
        proposal = _call(redraw.grid_merge, grid_ids=data["grid_ids"], by=request.user, note=data["note"])
        return _proposal_response(self, proposal)

    @extend_schema(
        request=GridCreatePreviewSerializer, responses={201: RedrawProposalDetailSerializer, 400: TERRITORY_400}
    )
    @action(detail=False, methods=["post"])
    @territory_errors
    def propose(self, request):
        """Preview a new grid (optionally taking its area from the sibling grids it overlaps).
        An optional ``leader`` is kept on the proposal and appointed by ``apply``."""
        data = _valid(GridCreatePreviewSerializer, request)
        sub_branch = drawable_sub_branches(request.user).filter(pk=data["sub_branch"]).first()
        if sub_branch is None:
            raise exceptions.PermissionDenied(_("You may not draw grids in this sub-branch."))
        with transaction.atomic():
            proposal = _call(
                redraw.grid_create_preview,
                by=request.user,
                sub_branch=sub_branch,
                **{k: data[k] for k in ("name", "code", "kind", "geom", "trim_neighbours", "note")},
            )
            if data.get("leader") is not None:
                _propose_leader(proposal, data["leader"])
        return _proposal_response(self, proposal)

    @extend_schema(responses={200: GridVersionSerializer(many=True)}, filters=False)
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def versions(self, request, pk=None):
        """Every kept version of the grid, newest first."""
        grid = self.get_object()
        rows = GridVersion.objects.filter(grid=grid).select_related("created_by").order_by("-number")
        return Response(GridVersionSerializer(rows, many=True).data)

    @extend_schema(methods=["GET"], responses={200: OpenApiTypes.OBJECT}, filters=False)
    @extend_schema(methods=["POST"], request=TeamInputSerializer, responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get", "post"], pagination_class=None, filter_backends=[])
    def team(self, request, pk=None):
        """The grid's leader and account managers, and the membership history. POST changes them
        (old memberships end, new ones start today; nothing is deleted)."""
        grid = self.get_object()
        if request.method == "POST":
            data = _valid(TeamInputSerializer, request)
            _call(team_svc.team_assign, grid=grid, by=request.user, **data)
        return Response(team_svc.team_of(grid=grid))

    @extend_schema(request=TeamBulkSerializer, responses={200: OpenApiTypes.OBJECT})
    @action(detail=False, methods=["post"], url_path="team-bulk")
    def team_bulk(self, request):
        """Set the teams of several grids at once (one transaction)."""
        data = _valid(TeamBulkSerializer, request)
        return Response(_call(team_svc.team_assign_bulk, by=request.user, assignments=data["assignments"]))


def _valid(serializer_class, request):
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _call(fn, **kwargs):
    """Run a service: a record out of the user's scope is a 404; a stale proposal a 409."""
    try:
        return fn(**kwargs)
    except redraw.StaleProposal as exc:
        raise Conflict(exc.messages[0]) from None
    except ObjectDoesNotExist:
        raise Http404 from None


class Conflict(exceptions.APIException):
    status_code = 409
    default_detail = _("The data changed since it was read.")
    default_code = "stale"


def _propose_leader(proposal: RedrawProposal, leader_id: int) -> None:
    """Keep the leader of a proposed new grid in its shape (``shapes[i]["leader"]``): the model has
    no column for it, and the shape is the new grid's description until it is applied."""
    for shape in proposal.shapes:
        if shape.get("grid_id") is None:
            shape["leader"] = int(leader_id)
    proposal.save(update_fields=["shapes"])


@functools.cache
def _proposal_brief() -> RedrawProposalSerializer:
    """RedrawProposalSerializer built once per process and used for its output only (apply's
    answer): building a ModelSerializer's fields costs ten times writing one proposal with them.
    None of its fields reads the context (the request), so the output is the one a serializer
    built per request gives (tests/grids/test_territory_api.py compares them)."""
    return RedrawProposalSerializer(context={})


def _proposal_response(view, proposal, status=201):
    return Response(RedrawProposalDetailSerializer(proposal, context=view.get_serializer_context()).data, status=status)


class RedrawProposalViewSet(RestrictedReadOnlyViewSet):
    """Previewed territory changes. The detail is the diff (moves, per-AM summary, map GeoJSON);
    ``apply`` writes it in one transaction, ``discard`` drops it. Decided by managers only."""

    queryset = RedrawProposal.objects.select_related("sub_branch", "grid", "created_by")
    filterset_class = RedrawProposalFilterSet

    def get_serializer_class(self):
        return RedrawProposalSerializer if self.action == "list" else RedrawProposalDetailSerializer

    def get_queryset(self):
        qs = super().get_queryset()
        if self.action == "list":
            qs = qs.defer("merchant_moves", "place_moves", "shapes", "grid_versions")
        elif self.action in ("apply", "discard"):
            # The services load the row themselves, under its lock: only the id is needed here.
            qs = qs.select_related(None).only("pk")
        return qs

    def _proposal_id(self):
        """The id in the URL, as get_object() takes it (a malformed one is a 404), without loading
        the row: redraw_apply() loads and locks it in one statement, under the user's scope."""
        if self.request.query_params:
            return self.get_object().pk  # the list filters narrow a detail URL too
        try:
            return RedrawProposal._meta.pk.to_python(self.kwargs[self.lookup_url_kwarg or self.lookup_field])
        except DjangoValidationError:
            raise Http404 from None

    @extend_schema(request=ApplyInputSerializer, responses={200: RedrawProposalSerializer, 400: TERRITORY_400})
    @action(detail=True, methods=["post"])
    @territory_errors
    def apply(self, request, pk=None):
        """Apply the previewed moves (the answer is the proposal without the diff: GET it for that).
        A new grid's leader kept on the proposal is appointed in the same transaction."""
        data = _valid(ApplyInputSerializer, request)
        proposal = _call(redraw.redraw_apply, proposal=self._proposal_id(), by=request.user, **data)
        return Response(_proposal_brief().to_representation(proposal))

    @extend_schema(request=None, responses={200: RedrawProposalDetailSerializer})
    @action(detail=True, methods=["post"])
    def discard(self, request, pk=None):
        proposal = _call(redraw.redraw_discard, proposal=self.get_object(), by=request.user)
        return _proposal_response(self, proposal, status=200)


class ChannelContactViewSet(RestrictedModelViewSet):
    """渠道关键人 of the grids in scope. Phone numbers are masked unless the user may view personal
    data. A write is re-checked inside its transaction: the contact must stay within the scope."""

    queryset = ChannelContact.objects.select_related("grid", "place")
    serializer_class = ChannelContactSerializer
    filterset_class = ChannelContactFilterSet

    def _save_in_scope(self, serializer, action_name):
        with transaction.atomic():
            obj = serializer.save()
            if not ChannelContact.objects.restrict(self.request.user, action_name).filter(pk=obj.pk).exists():
                raise exceptions.ValidationError({"grid": [_("This grid is outside the grids you may work in.")]})

    def perform_create(self, serializer):
        self._save_in_scope(serializer, "add")

    def perform_update(self, serializer):
        self._save_in_scope(serializer, "change")


class PlaceViewSet(RestrictedReadOnlyViewSet):
    """Places with their merchant counts (all / banked / with a loan)."""

    queryset = Place.objects.select_related("grid")
    serializer_class = PlaceWithCountsSerializer
    filterset_class = PlaceFilterSet

    def get_queryset(self):
        return coverage.places_with_counts(super().get_queryset())


class MembershipViewSet(RestrictedReadOnlyViewSet):
    queryset = Membership.objects.select_related("user", "branch", "sub_branch", "grid")
    serializer_class = MembershipSerializer
    filterset_class = MembershipFilterSet


class GridLayerViewSet(LayerViewSet):
    """Grids as GeoJSON (id, name, code, kind, status, sub-branch, colour). ``?with=merchant_count``
    adds each grid's merchant count (opt-in: it costs a count per grid)."""

    queryset = Grid.objects.all()
    filterset_class = GridFilterSet
    layer_fields = ["id", "name", "code", "kind", "status", "sub_branch_id", "color"]
    optional_fields = {"merchant_count": selectors.grids_with_merchant_count}

    def _with(self) -> list[str]:
        raw = self.request.query_params.get("with", "")
        wanted = [w.strip() for w in raw.split(",") if w.strip()]
        unknown = [w for w in wanted if w not in self.optional_fields]
        if unknown:
            raise exceptions.ValidationError({"with": [_("Unknown field: %(names)s.") % {"names": ", ".join(unknown)}]})
        return wanted

    def get_layer_fields(self):
        return [*self.layer_fields, *self._with()]

    def get_layer_queryset(self, queryset):
        queryset = selectors.grids_with_colour(queryset)
        for name in self._with():
            queryset = self.optional_fields[name](queryset)
        return queryset

    @extend_schema(
        filters=True,
        parameters=[
            OpenApiParameter(
                "with",
                str,
                enum=["merchant_count"],
                description="Extra properties, comma-separated: merchant_count.",
            )
        ],
        responses={(200, "application/geo+json"): OpenApiTypes.OBJECT},
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)


class PlaceLayerViewSet(LayerViewSet):
    queryset = Place.objects.all()
    filterset_class = PlaceFilterSet
    layer_fields = ["id", "name", "kind", "grid_id"]


class MeView(APIView):
    """Who am I, and what do I hold: the tablet's first call after login."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        return Response(selectors.user_summary(user=request.user))


class CoverageReportViewSet(RestrictedViewSetMixin, viewsets.GenericViewSet):
    """覆盖率: per grid (or per sub-branch) of the user's scope — merchants, in-grid rate (入格率),
    visited in the last 30 / 90 days, never visited (空白户). Sortable with ``ordering``."""

    queryset = Grid.objects.all()
    pagination_class = None
    filter_backends: list = []
    serializer_class = CoverageQuerySerializer

    @extend_schema(parameters=[CoverageQuerySerializer], responses={200: OpenApiTypes.OBJECT})
    def list(self, request, *args, **kwargs):
        params = CoverageQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        q = params.validated_data
        grids = self.get_queryset().filter(status="active")
        if q.get("sub_branch"):
            grids = grids.filter(sub_branch_id=q["sub_branch"])
        rows = coverage.coverage(grids=grids)
        if q["level"] == "sub_branch":
            rows = coverage.coverage_by_sub_branch(rows)
        key = q.get("ordering") or "name"
        desc = key.startswith("-")
        key = key.lstrip("-")
        rows.sort(key=lambda r: r["id"])
        rows.sort(key=lambda r: (r.get(key) is None, r.get(key) if r.get(key) is not None else 0), reverse=desc)
        totals = (
            coverage.coverage_by_sub_branch([{**r, "sub_branch_id": 0, "sub_branch_name": ""} for r in rows])
            if q["level"] == "grid"
            else None
        )
        return Response({"level": q["level"], "results": rows, "total": totals[0] if totals else None})
