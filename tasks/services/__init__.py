"""The only writers of trees, messages, tasks, reviews, reactions and the flagged queue, one module
per subject:

- common: task kinds, limits and the checks every claim and submission makes
- queue: handing out tasks (request, ack, nack), expiry, releasing a user's open tasks
- submissions: prompts and replies, reviews, rankings; reward-model scores on messages
- trees: how a tree moves on (reviews decided, growth and ranking finished, halt, resume, lottery)
- reactions: emoji, reports and the flagged queue, auto-moderation
- moderation: content moderation (delete, undelete, spam, edit, flags, tree moves, purging a user)

Tree locking and state changes: tasks.tree_state; scoring a tree: tasks.scoring. The public names
are re-exported here, so `from tasks import services; services.task_request(...)` works.
"""

from tasks.services.common import (
    LABEL_TASKS,
    MAX_CLIENT_ID,
    MAX_MODERATION_REASON,
    MAX_RANKING_LENGTH,
    MAX_REASON,
    PENDING_FIELD,
    RANK_TASKS,
    TEXT_TASKS,
    check_can_work,
    check_language,
    check_task_open,
    clean_text,
    count_decrement,
    task_finish,
    task_locked,
)
from tasks.services.moderation import (
    flag_resolve,
    message_delete,
    message_edit,
    message_flag,
    message_mark_spam,
    message_undelete,
    tree_move,
    user_purge_messages,
)
from tasks.services.queue import (
    task_ack,
    task_nack,
    task_release,
    task_request,
    tasks_expire,
    tasks_expire_job,
    user_open_tasks_release,
)
from tasks.services.reactions import auto_moderate, emoji_set, flag_add, message_report
from tasks.services.submissions import (
    labels_submit,
    message_reward_scores_set,
    ranking_submit,
    serving_scorer_set,
    task_submit,
    text_submit,
)
from tasks.services.trees import (
    lottery_activate,
    rankable_parents,
    review_decision_apply,
    subtree_set_deleted,
    tree_after_structure_change,
    tree_check_growth,
    tree_check_rankings,
    tree_counters_recompute,
    tree_halt,
    tree_resume,
)
from tasks.tree_state import tree_locked, tree_transition

__all__ = [
    "tree_locked",
    "tree_transition",
    "LABEL_TASKS",
    "MAX_CLIENT_ID",
    "MAX_MODERATION_REASON",
    "MAX_RANKING_LENGTH",
    "MAX_REASON",
    "PENDING_FIELD",
    "RANK_TASKS",
    "TEXT_TASKS",
    "auto_moderate",
    "check_can_work",
    "check_language",
    "check_task_open",
    "clean_text",
    "count_decrement",
    "emoji_set",
    "flag_add",
    "flag_resolve",
    "labels_submit",
    "lottery_activate",
    "message_delete",
    "message_edit",
    "message_flag",
    "message_mark_spam",
    "message_report",
    "message_reward_scores_set",
    "message_undelete",
    "rankable_parents",
    "ranking_submit",
    "review_decision_apply",
    "serving_scorer_set",
    "subtree_set_deleted",
    "task_ack",
    "task_finish",
    "task_locked",
    "task_nack",
    "task_release",
    "task_request",
    "task_submit",
    "tasks_expire",
    "tasks_expire_job",
    "text_submit",
    "tree_after_structure_change",
    "tree_check_growth",
    "tree_check_rankings",
    "tree_counters_recompute",
    "tree_halt",
    "tree_move",
    "tree_resume",
    "user_open_tasks_release",
    "user_purge_messages",
]
