"""Contributor accounts for the load benchmark (bench/task_loop.py): `bench-user-<i>` with the
terms accepted, a verified email and an API token each. Idempotent: existing accounts are reused."""

import json
from pathlib import Path

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

USERNAME = "bench-user-{}"


class Command(BaseCommand):
    help = "Create (or reuse) N benchmark contributors and write their API tokens as a JSON list."

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, required=True, help="How many contributors.")
        parser.add_argument("--out", required=True, help="JSON file to write the tokens to.")
        parser.add_argument("--force", action="store_true", help="Run even when DEBUG is off.")

    def handle(self, *args, count: int, out: str, force: bool = False, **options):
        if not settings.DEBUG and not force:
            raise CommandError("bench_users creates accounts with API tokens: it runs only with DEBUG on "
                               "(or --force).")
        if count < 1:
            raise CommandError("--count must be at least 1.")
        tokens = self.users_with_tokens(count)
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(tokens, indent=1) + "\n")
        self.stdout.write(f"{count} benchmark contributors; tokens written to {path}")

    @transaction.atomic
    def users_with_tokens(self, count: int) -> list[str]:
        User = get_user_model()
        now = timezone.now()
        tokens = []
        for i in range(1, count + 1):
            username = USERNAME.format(i)
            email = f"{username}@example.org"
            user, created = User.objects.get_or_create(
                username=username,
                defaults={"email": email, "display_name": f"Bench user {i}", "tos_accepted_at": now},
            )
            if created:
                user.set_unusable_password()  # the token is the only way in
                user.save(update_fields=["password"])
            elif user.tos_accepted_at is None:
                user.tos_accepted_at = now
                user.save(update_fields=["tos_accepted_at"])
            EmailAddress.objects.update_or_create(user=user, email=user.email,
                                                  defaults={"verified": True, "primary": True})
            tokens.append(Token.objects.get_or_create(user=user)[0].key)
        return tokens
