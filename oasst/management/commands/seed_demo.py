"""Demo data for a local site: an admin account (admin / admin) and, once the apps have
models, a demo community. Idempotent: running it again adds nothing."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

DEMO_ADMIN = ("admin", "admin@example.org", "admin")


class Command(BaseCommand):
    help = "Create the demo admin account and demo data (development only)."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="Run even when DEBUG is off.")

    @transaction.atomic
    def handle(self, *args, force: bool = False, **options):
        if not settings.DEBUG and not force:
            raise CommandError("seed_demo creates well-known passwords: it runs only with DEBUG on (or --force).")
        username, email, password = DEMO_ADMIN
        User = get_user_model()
        admin, created = User.objects.get_or_create(
            username=username,
            defaults={"email": email, "is_staff": True, "is_superuser": True,
                      "display_name": "Demo admin", "tos_accepted_at": timezone.now()},
        )
        if created:
            admin.set_password(password)
            admin.save(update_fields=["password"])
            from allauth.account.models import EmailAddress

            EmailAddress.objects.get_or_create(user=admin, email=email,
                                               defaults={"verified": True, "primary": True})
            self.stdout.write(f"Demo admin created: {username} / {password}")
        else:
            self.stdout.write(f"Demo admin exists: {username}")
