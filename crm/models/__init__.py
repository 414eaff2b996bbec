"""crm models, one module per part of the account: merchants, people and relations, the funnel,
activities, follow-ups. Import from ``crm.models``."""

from crm.models.activities import Activity, ActivityPhoto, EventAttendance
from crm.models.funnel import FunnelMonthCount, FunnelRollupState, Lead, LeadStageChange, LostReason
from crm.models.merchants import GridCheckRun, Industry, Merchant, MerchantGridFix
from crm.models.people import MerchantPerson, MerchantRelation, Person, PersonRelation, PiiAccess, ProductHolding
from crm.models.tasks import Handover, HandoverItem, Notification, Task

__all__ = [
    "Activity",
    "ActivityPhoto",
    "EventAttendance",
    "FunnelMonthCount",
    "FunnelRollupState",
    "GridCheckRun",
    "Handover",
    "HandoverItem",
    "Industry",
    "Lead",
    "LeadStageChange",
    "LostReason",
    "Merchant",
    "MerchantGridFix",
    "MerchantPerson",
    "MerchantRelation",
    "Notification",
    "Person",
    "PersonRelation",
    "PiiAccess",
    "ProductHolding",
    "Task",
]
