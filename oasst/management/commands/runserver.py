"""runserver, which under the embedded default (no broker, Celery eager) also starts the embedded worker:
beat's schedule and the training jobs then run in the server process (oasst/embedded.py)."""

from whitenoise.runserver_nostatic.management.commands.runserver import Command as StaticlessRunserverCommand

from oasst import embedded


class Command(StaticlessRunserverCommand):
    def inner_run(self, *args, **options):
        # inner_run runs in the serving process (the autoreloader's child), never in the file watcher.
        if embedded.start() is not None:
            self.stdout.write("Embedded worker started: scheduled jobs and training runs run in this process.")
        super().inner_run(*args, **options)
