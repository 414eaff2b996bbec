from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("crm", "0005_seed_lost_reasons")]
    operations = [
        TrigramExtension(),  # already in template1 via scripts/db.sh; a no-op there
        migrations.AddIndex(
            model_name="merchant",
            index=GinIndex(fields=["name"], name="merchant_name_trgm", opclasses=["gin_trgm_ops"]),
        ),
    ]
