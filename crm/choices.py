from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy


class MerchantStatus(models.TextChoices):
    PROSPECT = "prospect", _("Prospect")
    CUSTOMER = "customer", _("Customer")
    DORMANT = "dormant", _("Dormant")
    CLOSED = "closed", _("Closed")


class PersonRole(models.TextChoices):
    # 经营者: the person who runs the business, not the owner account manager (客户经理).
    OWNER = "owner", pgettext_lazy("person role in a merchant", "Owner")
    LEGAL_REP = "legal_rep", _("Legal representative")
    SHAREHOLDER = "shareholder", _("Shareholder")
    CONTROLLER = "controller", _("Actual controller")
    CONTACT = "contact", _("Contact")


class PersonRelationKind(models.TextChoices):
    SPOUSE = "spouse", _("Spouse")
    PARENT = "parent", _("Parent")
    CHILD = "child", _("Child")
    SIBLING = "sibling", _("Sibling")
    RELATIVE = "relative", _("Relative")


class MerchantRelationKind(models.TextChoices):
    SUPPLIER = "supplier", _("Supplier of")  # from supplies to (upstream -> downstream)
    GUARANTOR = "guarantor", _("Guarantor of")
    AFFILIATE = "affiliate", _("Affiliate of")


class ProductKind(models.TextChoices):
    DEPOSIT = "deposit", _("Deposit")
    LOAN = "loan", _("Loan")
    MERCHANT_PAYMENT = "merchant_payment", _("Merchant payment")
    CREDIT_CARD = "credit_card", _("Credit card")
    MORTGAGE = "mortgage", _("Mortgage")
    PAYROLL = "payroll", _("Payroll")


class LeadStage(models.TextChoices):
    LEAD = "lead", _("Lead")
    CONTACTED = "contacted", _("Contacted")
    VISITED = "visited", _("Visited")
    INTERESTED = "interested", _("Interested")
    APPLIED = "applied", _("Applied")
    APPROVED = "approved", _("Approved")
    DISBURSED = "disbursed", _("Disbursed")
    LOST = "lost", _("Lost")


FUNNEL_ORDER = [s for s in LeadStage if s != LeadStage.LOST]
CLOSED_STAGES = (LeadStage.DISBURSED, LeadStage.LOST)


class Intent(models.TextChoices):
    HIGH = "high", _("High intent")
    MEDIUM = "medium", _("Medium intent")
    LOW = "low", _("Low intent")


class LeadSource(models.TextChoices):
    STOCK = "stock", _("Existing customer")
    CHANNEL = "channel", _("Channel")
    CHAIN = "chain", _("Chain prospecting")
    OTHER_BANK = "other_bank", _("Other bank's customer")
    COLD_VISIT = "cold_visit", _("Cold visit")
    REFERRAL = "referral", _("Referral")


class ActivityKind(models.TextChoices):
    VISIT = "visit", _("Visit")
    CALL = "call", _("Call")
    EVENT = "event", _("Event")


class EventType(models.TextChoices):
    SALON = "salon", _("Salon")
    PARK_EVENT = "park_event", _("Park event")
    MARKET_EVENT = "market_event", _("Market event")
    CHANNEL_EVENT = "channel_event", _("Channel event")


class Outcome(models.TextChoices):
    REACHED = "reached", _("Reached the decision maker")
    NOT_REACHED = "not_reached", _("Not reached")
    INTERESTED = "interested", _("Interested")
    NOT_INTERESTED = "not_interested", _("Not interested")
    FOLLOW_UP = "follow_up", _("Needs follow-up")


class CheckinFlag(models.TextChoices):
    OK = "ok", _("At the merchant")
    TOO_FAR = "too_far", _("Too far from the merchant")
    POOR_ACCURACY = "poor_accuracy", _("Position too inaccurate")


class PhotoKind(models.TextChoices):
    STOREFRONT = "storefront", _("Storefront")
    INTERIOR = "interior", _("Interior")
    LICENSE = "license", _("Business licence")
    OTHER = "other", _("Other")


class TaskStatus(models.TextChoices):
    OPEN = "open", _("Open")
    DONE = "done", _("Done")
    CANCELLED = "cancelled", _("Cancelled")


class NotificationEvent(models.TextChoices):
    DUE = "due", _("Due today")
    OVERDUE = "overdue", _("Overdue")
