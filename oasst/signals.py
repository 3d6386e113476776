"""Signals oasst sends so that the apps above it act on a user's account without oasst importing them
(oasst is the bottom layer). Each is sent inside the writer's transaction; the receivers are
connected in the upper apps' AppConfig.ready():

- `user_banned(user=)`: tasks releases the user's open tasks (tasks.apps).
- `account_deleted(user=)`: tasks releases the user's open tasks, ranking removes their scores and
  leaderboard rows (tasks.apps, ranking.apps).
- `user_data_requested(user=)`: each receiver returns {section: rows} for "download my data"
  (tasks.apps, ranking.apps, training.apps).
"""

from django.dispatch import Signal

user_banned = Signal()
account_deleted = Signal()
user_data_requested = Signal()
