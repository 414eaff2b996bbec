"""People around a merchant, relations (for chain prospecting 链式拓客), products held, and the
log of who looked at unmasked personal data."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from crm.choices import MerchantRelationKind, PersonRelationKind, PersonRole, ProductKind
from grids.scoping import RestrictedManager


class Person(models.Model):
    """A natural person. ``phone`` and ``id_number`` are personal data: masked everywhere unless the
    user holds ``crm.view_pii``; every unmasked view is logged as a PiiAccess."""

    name = models.CharField(_("name"), max_length=100)
    phone = models.CharField(_("phone"), max_length=20, blank=True)
    id_number = models.CharField(_("ID number"), max_length=18, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    objects = RestrictedManager()
    scope_path = "person"

    class Meta:
        verbose_name = _("person")
        verbose_name_plural = _("people")
        ordering = ["id"]
        permissions = [("view_pii", _("Can view unmasked phone and ID numbers"))]
        indexes = [models.Index(fields=["phone"], name="person_phone")]

    def __str__(self):
        return self.name


class MerchantPerson(models.Model):
    """A person's role at a merchant (owner, legal representative, shareholder, controller, contact)."""

    merchant = models.ForeignKey("crm.Merchant", on_delete=models.CASCADE, related_name="people_links")
    person = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="merchant_links")
    role = models.CharField(_("role"), max_length=20, choices=PersonRole.choices)
    share_pct = models.DecimalField(_("share %"), max_digits=5, decimal_places=2, null=True, blank=True)
    title = models.CharField(pgettext_lazy("job title", "title"), max_length=50, blank=True)

    objects = RestrictedManager()
    scope_path = "via_merchant"

    class Meta:
        verbose_name = _("merchant person")
        constraints = [
            models.UniqueConstraint(fields=["merchant", "person", "role"], name="merchant_person_role_unique"),
            models.CheckConstraint(
                condition=Q(share_pct__isnull=True) | Q(share_pct__gte=0, share_pct__lte=100),
                name="merchant_person_share_range",
                violation_error_message=_("A share is between 0 and 100 %."),
            ),
        ]

    def __str__(self):
        return f"{self.person} · {self.get_role_display()} · {self.merchant}"


class PersonRelation(models.Model):
    """Family ties between people (horizontal chain prospecting)."""

    from_person = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="relations_out")
    to_person = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="relations_in")
    kind = models.CharField(_("kind"), max_length=20, choices=PersonRelationKind.choices)

    class Meta:
        verbose_name = _("person relation")
        constraints = [
            models.UniqueConstraint(fields=["from_person", "to_person", "kind"], name="person_relation_unique"),
            models.CheckConstraint(
                condition=~Q(from_person=F("to_person")),
                name="person_relation_not_self",
                violation_error_message=_("A person cannot be related to themselves."),
            ),
        ]

    def __str__(self):
        return f"{self.from_person} · {self.get_kind_display()} · {self.to_person}"


class MerchantRelation(models.Model):
    """Between merchants: supply chain (upstream -> downstream), guarantee, affiliation."""

    from_merchant = models.ForeignKey("crm.Merchant", on_delete=models.CASCADE, related_name="relations_out")
    to_merchant = models.ForeignKey("crm.Merchant", on_delete=models.CASCADE, related_name="relations_in")
    kind = models.CharField(_("kind"), max_length=20, choices=MerchantRelationKind.choices)
    note = models.CharField(_("note"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("merchant relation")
        constraints = [
            models.UniqueConstraint(fields=["from_merchant", "to_merchant", "kind"], name="merchant_relation_unique"),
            models.CheckConstraint(
                condition=~Q(from_merchant=F("to_merchant")),
                name="merchant_relation_not_self",
                violation_error_message=_("A merchant cannot be related to itself."),
            ),
        ]

    def __str__(self):
        return f"{self.from_merchant} · {self.get_kind_display()} · {self.to_merchant}"


class ProductHolding(models.Model):
    """A product the merchant holds with the bank (deposit, loan, merchant payment 聚合支付 ...)."""

    merchant = models.ForeignKey("crm.Merchant", on_delete=models.CASCADE, related_name="products")
    product = models.CharField(_("product"), max_length=20, choices=ProductKind.choices)
    opened_on = models.DateField(_("opened on"), null=True, blank=True)
    matures_on = models.DateField(_("matures on"), null=True, blank=True)
    balance = models.DecimalField(_("balance"), max_digits=14, decimal_places=2, null=True, blank=True)
    active = models.BooleanField(_("active"), default=True)

    objects = RestrictedManager()
    scope_path = "via_merchant"

    class Meta:
        verbose_name = _("product held")
        verbose_name_plural = _("products held")
        # "Loans about to mature" lists (存量客户深挖).
        indexes = [models.Index(fields=["product", "matures_on"], name="holding_maturity")]

    def __str__(self):
        return f"{self.merchant} · {self.get_product_display()}"


class PiiAccess(models.Model):
    """One unmasked view of personal data: who saw which field of whom, when."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    person = models.ForeignKey(Person, on_delete=models.PROTECT, related_name="+")
    field = models.CharField(max_length=20)
    at = models.DateTimeField(auto_now_add=True)
    context = models.CharField(max_length=100, blank=True)

    objects = RestrictedManager()
    scope_path = "superuser"

    class Meta:
        verbose_name = _("personal data access")
        ordering = ["-at"]

    def __str__(self):
        return f"{self.user} · {self.field} · {self.at:%Y-%m-%d %H:%M}"
