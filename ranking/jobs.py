"""Celery jobs of the ranking app: thin wrappers around its services. Scoring a tree (jobs
"ranking.tree_score", "ranking.scoring_retry") is tasks.scoring: it writes the replies' ranks."""

from celery import shared_task

from ranking import services


@shared_task(name="ranking.leaderboard_rebuild")
def leaderboard_rebuild_job(frame: str) -> int:
    return services.leaderboard_rebuild(frame=frame)


@shared_task(name="ranking.leaderboards_rebuild_after_new_events")
def leaderboards_rebuild_after_new_events_job() -> bool:
    return services.leaderboards_rebuild_after_new_events()
