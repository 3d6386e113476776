"""REST API v1 for moderators (trusted clients with a moderator's token): act on messages, trees and flags."""

from django.utils.translation import gettext
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from oasst.audit import check_permission
from tasks import services
from tasks.api import ERRORS, MessageSerializer
from tasks.models import FlaggedMessage, TreeState


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")


class EditSerializer(ReasonSerializer):
    text = serializers.CharField(trim_whitespace=False)


class MoveSerializer(ReasonSerializer):
    state = serializers.ChoiceField(choices=TreeState.values)


class ResolveSerializer(ReasonSerializer):
    decision = serializers.ChoiceField(choices=["dismiss", "delete", "ban"])


class ModerationResultSerializer(serializers.Serializer):
    message_id = serializers.UUIDField(required=False)
    tree_id = serializers.UUIDField(required=False)
    changed = serializers.IntegerField(required=False)
    state = serializers.CharField(required=False)


class FlagSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    message = MessageSerializer()
    reports = serializers.IntegerField()
    reasons = serializers.ListField(child=serializers.CharField())
    updated_at = serializers.DateTimeField()


MESSAGE_ACTIONS = {
    "delete": services.message_delete,
    "undelete": services.message_undelete,
    "spam": services.message_mark_spam,
    "flag": services.message_flag,
}


class ModerationMessageView(APIView):
    @extend_schema(operation_id="moderation_message_action", request=ReasonSerializer,
                   parameters=[OpenApiParameter("action", OpenApiTypes.STR, OpenApiParameter.PATH,
                                                enum=sorted(MESSAGE_ACTIONS))],
                   responses={200: ModerationResultSerializer, **ERRORS},
                   description="Moderators: soft-delete a message with its subtree, undelete it with its ancestors, "
                               "mark it as spam, or move it to the flagged queue. Written to the audit log.")
    def post(self, request, message_id, action):
        if action not in MESSAGE_ACTIONS:
            raise NotFound(gettext("Unknown action %(action)s.") % {"action": repr(action)})
        body = ReasonSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        result = MESSAGE_ACTIONS[action](actor=request.user, message_id=message_id, **body.validated_data)
        return Response({"message_id": message_id, **({"changed": result} if isinstance(result, int) else {})})


class ModerationEditView(APIView):
    @extend_schema(operation_id="moderation_message_edit", request=EditSerializer,
                   responses={200: MessageSerializer, **ERRORS},
                   description="Moderators: edit a message's text; the previous text is kept as a revision.")
    def post(self, request, message_id):
        body = EditSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        message = services.message_edit(actor=request.user, message_id=message_id, **body.validated_data)
        return Response(MessageSerializer(message, context={"request": request}).data)


class ModerationTreeMoveView(APIView):
    @extend_schema(operation_id="moderation_tree_move", request=MoveSerializer,
                   responses={200: ModerationResultSerializer, **ERRORS},
                   description="Moderators: halt, resume, abort a tree or move it along its states.")
    def post(self, request, tree_id):
        body = MoveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        tree = services.tree_move(actor=request.user, tree_id=tree_id, **body.validated_data)
        return Response({"tree_id": tree.pk, "state": tree.state})


class ModerationFlagsView(APIView):
    @extend_schema(operation_id="moderation_flags", responses={200: FlagSerializer(many=True), **ERRORS},
                   description="Moderators: the open flagged-message queue, newest report first (100 at most).")
    def get(self, request):
        check_permission(request.user, "tasks.moderate_message")
        flags = FlaggedMessage.objects.filter(processed=False).select_related("message").order_by("-updated_at")[:100]
        return Response(FlagSerializer(flags, many=True, context={"request": request}).data)


class ModerationFlagResolveView(APIView):
    @extend_schema(operation_id="moderation_flag_resolve", request=ResolveSerializer,
                   responses={200: ModerationResultSerializer, **ERRORS},
                   description="Moderators: dismiss a flag, delete the message, or delete it and ban its author.")
    def post(self, request, flag_id):
        body = ResolveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        flag = services.flag_resolve(actor=request.user, flag_id=flag_id, **body.validated_data)
        return Response({"message_id": flag.message_id})
