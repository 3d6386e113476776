"""Signals tasks sends so that the app above it (training) acts on the trees without tasks importing it.
Each is sent inside the writer's transaction; the receivers are connected in the upper app's
AppConfig.ready():

- `reply_accepted(message_id=)`: an assistant reply was accepted by review consensus; training scores it
  with the reward model in service, once the transaction commits (training.apps).
"""

from django.dispatch import Signal

reply_accepted = Signal()
