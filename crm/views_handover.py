"""管户移交 pages for branch managers and regional heads: pick a person of the team, see their book
by grid, choose the receiver (one for everything, or one per grid), apply; then the result.

Access: crm.services.handover.handover_scope (403 for grid members and mid-office); every list on
the page comes from the services' restricted querysets; the service re-validates everything."""

from collections import Counter, defaultdict

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext_lazy as _

from crm.models import Handover
from crm.services.handover import (
    handover_apply,
    handover_people,
    handover_preview,
    handover_receivers,
    handover_scope,
)


class PersonChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        return f"{obj} ({obj.username})"


class HandoverForm(forms.Form):
    """One receiver for everything and/or one per grid (a grid's own choice wins)."""

    from_user = PersonChoiceField(queryset=None, widget=forms.HiddenInput)
    to_user = PersonChoiceField(queryset=None, required=False, label=_("Receiver"), empty_label=_("— choose —"))
    end_memberships = forms.BooleanField(
        required=False, initial=True, label=_("End their grid memberships (they lose access at once)")
    )
    note = forms.CharField(max_length=200, required=False, label=_("Note"))

    def __init__(self, *args, book, people, receivers, **kwargs):
        super().__init__(*args, **kwargs)
        self.book = book
        self.fields["from_user"].queryset = people
        self.fields["to_user"].queryset = receivers
        self.grid_fields = []
        for g in book.grids:
            if g.grid is None:
                continue
            name = f"grid_{g.grid.pk}"
            self.fields[name] = PersonChoiceField(
                queryset=receivers, required=False, label=str(g.grid), empty_label=_("— same as above —")
            )
            self.grid_fields.append((g, self[name]))

    def assignments(self):
        data = self.cleaned_data
        per_grid = {g.grid_id: data[f"grid_{g.grid_id}"] for g, _f in self.grid_fields if data.get(f"grid_{g.grid_id}")}
        if not per_grid:
            return data.get("to_user")
        if data.get("to_user"):
            return {g.grid_id: per_grid.get(g.grid_id, data["to_user"]) for g in self.book.grids}
        return per_grid


@login_required
def handover_page(request):
    """GET: the person picker, and with ``?from_user=`` their book and the form. POST: apply."""
    by = request.user
    scope = handover_scope(by=by)  # PermissionDenied -> 403
    people = handover_people(by=by, scope=scope)
    raw = request.POST.get("from_user") if request.method == "POST" else request.GET.get("from_user")
    from_user = None
    if raw:
        from_user = people.filter(pk=int(raw)).first() if raw.isascii() and raw.isdigit() and len(raw) < 19 else None
    context = {"people": people, "from_user": from_user, "book": None, "form": None, "unknown_person": bool(raw)}
    if from_user is None:
        return render(request, "crm/handover.html", context)

    book = handover_preview(from_user=from_user, by=by)
    receivers = handover_receivers(by=by, scope=scope, exclude=from_user)
    if request.method == "POST":
        form = HandoverForm(request.POST, book=book, people=people, receivers=receivers)
        if form.is_valid():
            try:
                handover = handover_apply(
                    from_user=from_user,
                    by=by,
                    assignments=form.assignments(),
                    end_memberships=form.cleaned_data["end_memberships"],
                    note=form.cleaned_data["note"],
                )
            except ValidationError as exc:
                for field, messages in exc.message_dict.items():
                    form.add_error("to_user" if field == "to_user" else None, messages)
            else:
                return redirect("handover-result", pk=handover.pk)
    else:
        form = HandoverForm(initial={"from_user": from_user.pk}, book=book, people=people, receivers=receivers)
    context.update(book=book, form=form, unknown_person=False)
    return render(request, "crm/handover.html", context)


@login_required
def handover_result(request, pk: int):
    """One applied handover (seen by whoever applied it): what went to whom."""
    handover = get_object_or_404(Handover.objects.restrict(request.user).select_related("from_user", "by"), pk=pk)
    items = list(
        handover.items.select_related("merchant__grid", "lead__merchant", "task__merchant", "to_user").order_by(
            "to_user_id", "id"
        )
    )
    per_receiver: dict = defaultdict(Counter)
    receivers = {}
    for item in items:
        kind = "merchant" if item.merchant_id else "lead" if item.lead_id else "task"
        per_receiver[item.to_user_id][kind] += 1
        receivers[item.to_user_id] = item.to_user
    totals = sum(per_receiver.values(), Counter())
    context = {
        "handover": handover,
        "items": items,
        "totals": totals,
        "receivers": [{"user": receivers[uid], **counts} for uid, counts in per_receiver.items()],
    }
    return render(request, "crm/handover_result.html", context)
