"""Seed the configurable list of reasons a lead is lost."""

from django.db import migrations

REASONS = [
    ("no_need", "暂无融资需求", "No financing need"),
    ("rate", "利率不满意", "Rate not acceptable"),
    ("other_bank", "已选择他行", "Chose another bank"),
    ("not_qualified", "不符合准入条件", "Not eligible"),
    ("credit", "征信或涉诉问题", "Credit record or litigation"),
    ("unreachable", "无法联系", "Unreachable"),
    ("closed", "商户已停业", "Business closed"),
    ("other", "其他", "Other"),
]


def seed(apps, schema_editor):
    LostReason = apps.get_model("crm", "LostReason")
    for code, zh, en in REASONS:
        LostReason.objects.update_or_create(code=code, defaults={"name_zh": zh, "name_en": en})


def unseed(apps, schema_editor):
    apps.get_model("crm", "LostReason").objects.filter(code__in=[c for c, *_ in REASONS]).delete()


class Migration(migrations.Migration):
    dependencies = [("crm", "0004_accounts_activities")]
    operations = [migrations.RunPython(seed, unseed)]
