"""REST API v1 for scores: the user's own stats and the leaderboard. The trollboard (it reads
messages and reactions) is tasks.trollboard_api."""

from django.utils.translation import gettext
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from oasst.api import ErrorSerializer, UserSerializer
from ranking import scoring, selectors
from ranking.models import Frame

ERRORS = {code: ErrorSerializer for code in (401, 403, 404)}
PAGE_SIZE = 50


class LeaderboardEntrySerializer(serializers.Serializer):
    rank = serializers.IntegerField()
    display_name = serializers.CharField(source="user.public_name")
    score = serializers.IntegerField()
    level = serializers.IntegerField()


class LeaderboardSerializer(serializers.Serializer):
    frame = serializers.CharField()
    built_at = serializers.DateTimeField(allow_null=True)
    page = serializers.IntegerField()
    has_next = serializers.BooleanField()
    results = LeaderboardEntrySerializer(many=True)
    me = LeaderboardEntrySerializer(allow_null=True)
    around_me = LeaderboardEntrySerializer(many=True)


class FrameStatsSerializer(serializers.Serializer):
    score = serializers.IntegerField()
    rank = serializers.IntegerField(allow_null=True)
    breakdown = serializers.DictField(child=serializers.IntegerField())
    counts = serializers.DictField(child=serializers.IntegerField())


class MeSerializer(UserSerializer):
    level = serializers.IntegerField()
    level_points = serializers.IntegerField(help_text="Points earned within the current level.")
    level_span = serializers.IntegerField(allow_null=True, help_text="Points the current level spans (null at 100).")
    streak = serializers.IntegerField()
    frames = serializers.DictField(child=FrameStatsSerializer())

    class Meta(UserSerializer.Meta):
        fields = [*UserSerializer.Meta.fields, "level", "level_points", "level_span", "streak", "frames"]
        read_only_fields = fields


def frame_or_404(frame: str) -> str:
    if frame not in Frame.values:
        raise NotFound(gettext("Unknown time frame %(frame)s: use day, week, month or total.") % {"frame": repr(frame)})
    return frame


class UserMeView(APIView):
    @extend_schema(operation_id="users_me", responses={200: MeSerializer, **ERRORS},
                   description="The user, with points per time frame (and where they came from), level, streak "
                               "and leaderboard rank.")
    def get(self, request):
        user = request.user
        scores = selectors.user_scores(user=user)
        ranks = selectors.leaderboard_ranks(user)
        total = scores["total"].score
        level_points, level_span = scoring.level_progress(total)
        from django.utils import timezone

        data = UserSerializer(user).data | {
            "level": scoring.level(total), "level_points": level_points, "level_span": level_span,
            "streak": scoring.streak_now(streak_days=user.streak_days, last_activity_at=user.last_activity_at,
                                         now=timezone.now()),
            "frames": {frame: {"score": score.score, "breakdown": score.breakdown, "counts": score.counts,
                               "rank": ranks[frame].rank if frame in ranks else None}
                       for frame, score in scores.items()},
        }
        return Response(data)


class LeaderboardView(APIView):
    @extend_schema(operation_id="leaderboard", responses={200: LeaderboardSerializer, **ERRORS},
                   parameters=[OpenApiParameter("page", OpenApiTypes.INT, description="Page (50 entries), from 1")],
                   description="The leaderboard of a time frame (day = last 24 h, week, month, total), rebuilt "
                               "periodically, with the requesting user's own entry and the entries around it.")
    def get(self, request, frame):
        frame = frame_or_404(frame)
        try:
            page = max(1, int(request.query_params.get("page", 1)))
        except ValueError:
            page = 1
        entries = selectors.leaderboard_page(frame, page=page, size=PAGE_SIZE)
        mine = selectors.leaderboard_ranks(request.user).get(frame)
        around = selectors.leaderboard_window(frame, mine.rank) if mine else []
        return Response(LeaderboardSerializer({
            "frame": frame, "built_at": entries[0].built_at if entries else None, "page": page,
            "has_next": len(entries) > PAGE_SIZE, "results": entries[:PAGE_SIZE],
            "me": next((e for e in around if e.rank == mine.rank), None) if mine else None, "around_me": around,
        }).data)
