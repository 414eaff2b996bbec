"""Seed the configurable industry list with the key industries of DOMAIN.md."""

from django.db import migrations

INDUSTRIES = [
    ("food", "食品", "Food", True),
    ("catering_lodging", "餐饮住宿", "Catering and lodging", True),
    ("manufacturing", "制造业", "Manufacturing", True),
    ("logistics", "物流", "Logistics", True),
    ("medical", "医疗", "Medical", True),
    ("education", "教育", "Education", True),
    ("culture", "文化", "Culture", True),
    ("decoration", "装饰装修", "Decoration", True),
    ("wholesale_retail", "批发零售", "Wholesale and retail", False),
    ("building_materials", "建材", "Building materials", False),
    ("cold_chain", "冷链", "Cold chain", False),
    ("agriculture", "农业", "Agriculture", False),
    ("technology", "科技", "Technology", False),
    ("other", "其他", "Other", False),
]


def seed(apps, schema_editor):
    Industry = apps.get_model("crm", "Industry")
    for i, (code, zh, en, key) in enumerate(INDUSTRIES):
        Industry.objects.update_or_create(
            code=code, defaults={"name_zh": zh, "name_en": en, "is_key": key, "sort_order": i * 10}
        )


def unseed(apps, schema_editor):
    apps.get_model("crm", "Industry").objects.filter(code__in=[c for c, *_ in INDUSTRIES]).delete()


class Migration(migrations.Migration):
    dependencies = [("crm", "0002_initial")]
    operations = [migrations.RunPython(seed, unseed)]
