"""Celery jobs of the ranking app: thin wrappers around its services."""

from celery import shared_task

from ranking import services


@shared_task(name="ranking.tree_score")
def tree_score_job(tree_id: str) -> str:
    return services.tree_score_or_fail(tree_id=tree_id).state


@shared_task(name="ranking.scoring_retry")
def scoring_retry_job() -> int:
    return services.trees_scoring_retry()


@shared_task(name="ranking.leaderboard_rebuild")
def leaderboard_rebuild_job(frame: str) -> int:
    return services.leaderboard_rebuild(frame=frame)


@shared_task(name="ranking.leaderboards_rebuild_after_new_events")
def leaderboards_rebuild_after_new_events_job() -> bool:
    return services.leaderboards_rebuild_after_new_events()
