"""REST API v1 for moderators: the trollboard, the users whose messages drew the most red flags,
downvotes and bad labels (tasks.selectors.troll_counts). Scores and the leaderboard: ranking.api."""

from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from ranking.api import ERRORS, frame_or_404
from tasks import selectors


class IsModerator(BasePermission):
    message = gettext_lazy("Only moderators may see this.")

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated
                    and request.user.has_perm("ranking.view_trollboard"))


class TrollboardEntrySerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    username = serializers.CharField()
    troll_score = serializers.IntegerField()
    red_flags = serializers.IntegerField()
    upvotes = serializers.IntegerField()
    downvotes = serializers.IntegerField()
    spam_prompts = serializers.IntegerField()
    lang_mismatch = serializers.IntegerField()
    not_appropriate = serializers.IntegerField()
    pii = serializers.IntegerField()
    hate_speech = serializers.IntegerField()
    sexual_content = serializers.IntegerField()
    political_content = serializers.IntegerField()


class TrollboardView(APIView):
    permission_classes = [IsModerator]

    @extend_schema(operation_id="trollboard", responses={200: TrollboardEntrySerializer(many=True), **ERRORS},
                   description="Moderators: users whose messages drew the most red flags, downvotes and bad labels.")
    def get(self, request, frame):
        entries = selectors.troll_counts(frame=frame_or_404(frame))
        names = dict(get_user_model().objects.filter(pk__in=[e["user_id"] for e in entries])
                     .values_list("pk", "username"))
        return Response(TrollboardEntrySerializer([{**e, "username": names.get(e["user_id"], "")} for e in entries],
                                                  many=True).data)
