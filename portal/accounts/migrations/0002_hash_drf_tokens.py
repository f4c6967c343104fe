"""DRF's tokens (one plain key per user) become hashed ``ApiToken`` rows, and are deleted.

The key itself keeps working (a request's key is hashed and looked up), with no expiry, as
before: a site that upgrades keeps its scripts. The plain keys do not stay behind in
``authtoken_token``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.db import migrations


def hash_drf_tokens(apps: Any, schema_editor: Any) -> None:
    DrfToken = apps.get_model("authtoken", "Token")
    ApiToken = apps.get_model("accounts", "ApiToken")
    for old in DrfToken.objects.all().iterator():
        ApiToken.objects.create(
            user_id=old.user_id,
            name="API token (before named tokens)",
            prefix=old.key[:8],
            key_hash=hashlib.sha256(old.key.encode()).hexdigest(),
            created=old.created,
            expires=None,
        )
    DrfToken.objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("authtoken", "0003_tokenproxy"),
    ]

    # Not reversible: the plain keys are gone once hashed (that is the point).
    operations = [migrations.RunPython(hash_drf_tokens, migrations.RunPython.noop)]
