"""The funnel report page (漏斗报表): for regional heads first, and for everyone over their own scope.

Leads reaching each stage in a month (or any period of days), with the conversion from the stage
before, next to the activity volume (visits, calls, events) that produced them; then one row per
sub-branch (or per grid, once a sub-branch is chosen). Everything comes from
``crm.selectors.funnel.funnel_summary`` over ``Grid.objects.restrict(user)``: the same numbers as
``/api/v1/reports/funnel/``, whole months from the rollup."""

from __future__ import annotations

import datetime

from django import forms
from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from crm.api.funnel import MAX_REPORT_DAYS
from crm.choices import FUNNEL_ORDER, ActivityKind, LeadStage
from crm.selectors.funnel import funnel_summary, next_month
from grids.models import Grid, SubBranch

MONTHS_OFFERED = 12


def _month_start(day: datetime.date, back: int = 0) -> datetime.date:
    day = day.replace(day=1)
    for _i in range(back):
        day = (day - datetime.timedelta(days=1)).replace(day=1)
    return day


class FunnelReportForm(forms.Form):
    """The period (a month of the last year, or two dates) and, optionally, one sub-branch of the
    user's scope (the choices come from ``SubBranch.objects.restrict``)."""

    month = forms.ChoiceField(label=gettext_lazy("Month"), required=False)
    since = forms.DateField(label=gettext_lazy("From"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label=gettext_lazy("To"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    sub_branch = forms.TypedChoiceField(label=gettext_lazy("Sub-branch"), required=False, coerce=int, empty_value=None)

    def __init__(self, *args, user, today: datetime.date, **kwargs):
        super().__init__(*args, **kwargs)
        months = [_month_start(today, back) for back in range(MONTHS_OFFERED)]
        self.fields["month"].choices = [(m.strftime("%Y-%m"), date_format(m, "YEAR_MONTH_FORMAT")) for m in months]
        # (pk, name, code) of the sub-branches in scope: the choices, and the rows' labels.
        self.sub_branches = list(SubBranch.objects.restrict(user).order_by("code").values_list("pk", "name", "code"))
        self.fields["sub_branch"].choices = [
            ("", _("All in my scope")),
            *((pk, name) for pk, name, _c in self.sub_branches),
        ]
        self.today = today

    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since or until:
            if not (since and until):
                raise forms.ValidationError(_("Give both dates, or choose a month."))
            if until < since:
                self.add_error("until", _("The end is before the start."))
            elif (until - since).days + 1 > MAX_REPORT_DAYS:
                self.add_error("until", _("A report covers at most %(days)s days.") % {"days": MAX_REPORT_DAYS})
        else:
            month = data.get("month") or self.today.strftime("%Y-%m")
            first = datetime.date.fromisoformat(f"{month}-01")
            data["since"], data["until"] = first, next_month(first) - datetime.timedelta(days=1)
        return data


def _funnel_steps(stages: dict) -> list[dict]:
    """The funnel bars: each stage's count and its width against the largest. Counts are moves
    into each stage within the period (a flow, not a cohort: a lead contacted last month and
    visited this month counts under "visited" only), so no stage-to-stage rate is shown."""
    counts = [(stage, stages.get(stage.value, 0)) for stage in FUNNEL_ORDER]
    top = max([n for _stage, n in counts] + [1])
    return [{"stage": stage, "n": n, "width": round(100 * n / top)} for stage, n in counts]


def _zero_counts() -> tuple[dict, dict]:
    return dict.fromkeys(LeadStage.values, 0), dict.fromkeys(ActivityKind.values, 0)


@login_required
def funnel_report(request):
    """GET ``month`` (YYYY-MM) or ``since``/``until`` (dates), ``sub_branch`` (id in scope)."""
    user = request.user
    today = timezone.localdate()
    form = FunnelReportForm(request.GET or {"month": today.strftime("%Y-%m")}, user=user, today=today)
    context = {"form": form, "report": None}
    if form.is_valid():
        data = form.cleaned_data
        since_day, until_day = data["since"], data["until"]
        sub_branch_id = data.get("sub_branch")  # one of the choices: a sub-branch of the scope
        # One row per grid once a sub-branch is chosen (or the scope is one); else per sub-branch.
        by_grid = sub_branch_id is not None or len(form.sub_branches) <= 1
        zone = timezone.get_default_timezone()
        summary = funnel_summary(
            user=user,
            sub_branch_id=sub_branch_id,
            since=datetime.datetime.combine(since_day, datetime.time(), zone),
            until=datetime.datetime.combine(until_day + datetime.timedelta(days=1), datetime.time(), zone),
        )
        context["report"] = {
            "since": since_day,
            "until": until_day,
            "steps": _funnel_steps(summary["stages"]),
            "lost": summary["stages"].get(LeadStage.LOST, 0),
            "activities": [(kind, summary["activities"].get(kind.value, 0)) for kind in ActivityKind],
            "rows": _rows(user, summary["grids"], by_grid=by_grid, sub_branches=form.sub_branches),
            "by_grid": by_grid,
            "stage_columns": [*FUNNEL_ORDER, LeadStage.LOST],
            "kinds": list(ActivityKind),
        }
    return render(request, "crm/funnel_report.html", context)


def _rows(user, grid_rows: list[dict], *, by_grid: bool, sub_branches: list[tuple]) -> list[dict]:
    """Table rows: the report's grid rows as they are, or rolled up to their sub-branch (one
    restricted query for the grids' sub-branches; names from ``sub_branches``, the form's)."""
    if by_grid:
        rows = [
            {"name": r["name"], "code": r["code"], "stages": r["stages"], "activities": r["activities"]}
            for r in grid_rows
        ]
    else:
        ids = [r["id"] for r in grid_rows]
        parent = dict(Grid.objects.restrict(user).filter(pk__in=ids).values_list("pk", "sub_branch_id").order_by())
        units = {pk: (name, code) for pk, name, code in sub_branches}
        totals: dict[int, dict] = {}
        for r in grid_rows:
            sb = parent.get(r["id"])
            if sb is None:
                continue
            if sb not in totals:
                stages, activities = _zero_counts()
                name, code = units.get(sb, ("", ""))
                totals[sb] = {"name": name, "code": code, "stages": stages, "activities": activities}
            row = totals[sb]
            for key, n in r["stages"].items():
                row["stages"][key] += n
            for key, n in r["activities"].items():
                row["activities"][key] += n
        rows = sorted(totals.values(), key=lambda row: row["code"])
    for row in rows:
        row["stage_list"] = [row["stages"].get(s.value, 0) for s in [*FUNNEL_ORDER, LeadStage.LOST]]
        row["kind_list"] = [row["activities"].get(k.value, 0) for k in ActivityKind]
    return rows
