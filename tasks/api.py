"""REST API v1 for contributors: tasks and messages, serializers (input / output) and views, each calling one service.

The moderators' API is tasks.moderation_api, the researchers' export API tasks.export_api."""

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from oasst import services as account_services
from oasst.api import ErrorSerializer, UserSerializer
from oasst.languages import LANGUAGES
from oasst.throttles import WindowThrottle
from ranking.models import Ranking
from tasks import oasst_format, selectors, services
from tasks.models import Emoji, Review, Task, TaskType
from tasks.tree_manager import tree_config

ERRORS = {code: ErrorSerializer for code in (400, 401, 403, 404, 409, 429)}


class ConversationMessageSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    role = serializers.CharField()
    text = serializers.CharField()
    lang = serializers.CharField(required=False)


class TaskSerializer(serializers.Serializer):
    """Plain (not Model-) serializers on the hot endpoints: no field introspection per request."""

    id = serializers.UUIDField(read_only=True)
    type = serializers.ChoiceField(choices=TaskType.choices, read_only=True)
    lang = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    expires_at = serializers.DateTimeField(read_only=True)
    acked_at = serializers.DateTimeField(read_only=True, allow_null=True)
    done = serializers.BooleanField(read_only=True)
    skipped = serializers.BooleanField(read_only=True)
    # Present by task type only: not read_only, which the schema would mark as always present.
    conversation = ConversationMessageSerializer(many=True, source="payload.conversation", required=False)
    message_id = serializers.UUIDField(source="payload.message_id", required=False)
    reply_messages = ConversationMessageSerializer(many=True, source="payload.reply_messages", required=False)
    valid_labels = serializers.ListField(child=serializers.CharField(), source="payload.valid_labels",
                                         required=False)
    mandatory_labels = serializers.ListField(child=serializers.CharField(), source="payload.mandatory_labels",
                                             required=False)
    mode = serializers.CharField(source="payload.mode", required=False)


_TIMESTAMP = serializers.DateTimeField()


def _brief(message: dict) -> dict:
    brief = {"id": str(message["id"]), "role": str(message["role"]), "text": str(message["text"])}
    if "lang" in message:
        brief["lang"] = str(message["lang"])
    return brief


def task_data(task: Task) -> dict:
    """TaskSerializer(task).data, built directly: the task endpoints answer it on every request and ack,
    and DRF deep-copies the serializer's fourteen fields (two of them nested) for each answer. The schema stays
    TaskSerializer's; tests/tasks/test_api_serialization.py holds the two equal for every task type."""
    payload = task.payload
    data = {"id": str(task.pk), "type": task.type, "lang": str(task.lang),
            "created_at": _TIMESTAMP.to_representation(task.created_at),
            "expires_at": _TIMESTAMP.to_representation(task.expires_at),
            "acked_at": _TIMESTAMP.to_representation(task.acked_at) if task.acked_at is not None else None,
            "done": bool(task.done), "skipped": bool(task.skipped)}
    if "conversation" in payload:
        data["conversation"] = [_brief(m) for m in payload["conversation"]]
    if "message_id" in payload:
        data["message_id"] = str(payload["message_id"])
    if "reply_messages" in payload:
        data["reply_messages"] = [_brief(m) for m in payload["reply_messages"]]
    for key in ("valid_labels", "mandatory_labels"):
        if key in payload:
            data[key] = [str(label) for label in payload[key]]
    if "mode" in payload:
        data["mode"] = str(payload["mode"])
    return data


class TaskRequestSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["random", *TaskType.values], default="random")
    lang = serializers.ChoiceField(choices=sorted(LANGUAGES), required=False,
                                   help_text="Defaults to the user's preferred language.")


class NackSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=services.MAX_REASON, default="")


class SubmitSerializer(serializers.Serializer):
    """One body for every task type: text tasks send text (and client_id), rank tasks a ranking or
    not_rankable, label tasks labels (and an optional text comment and report)."""

    text = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    client_id = serializers.CharField(required=False, allow_blank=True, max_length=64, default="")
    ranking = serializers.ListField(child=serializers.CharField(max_length=64), required=False,
                                    max_length=services.MAX_RANKING_LENGTH)
    not_rankable = serializers.BooleanField(required=False, default=False)
    labels = serializers.DictField(child=serializers.FloatField(), required=False)
    report = serializers.BooleanField(required=False, default=False)


class MessageSerializer(serializers.Serializer):
    id = serializers.UUIDField(read_only=True)
    tree_id = serializers.UUIDField(read_only=True)
    parent_id = serializers.UUIDField(read_only=True, allow_null=True)
    role = serializers.CharField(read_only=True)
    text = serializers.CharField(read_only=True)
    lang = serializers.CharField(read_only=True)
    depth = serializers.IntegerField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    review_count = serializers.IntegerField(read_only=True)
    review_result = serializers.ChoiceField(choices=["accepted", "rejected", "undecided"], source="review_state",
                                            read_only=True)
    rank = serializers.IntegerField(read_only=True, allow_null=True)
    synthetic = serializers.BooleanField(read_only=True)
    model_name = serializers.CharField(read_only=True)
    emojis = serializers.DictField(child=serializers.IntegerField(), read_only=True)
    labels = serializers.DictField(read_only=True)
    is_own = serializers.SerializerMethodField()

    def get_is_own(self, message) -> bool:
        request = self.context.get("request")
        return bool(request and message.author_id == request.user.pk)


class RankingResultSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    parent_id = serializers.UUIDField(read_only=True)
    ranking = serializers.ListField(child=serializers.UUIDField(), read_only=True)
    not_rankable = serializers.BooleanField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)


class ReviewResultSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    message_id = serializers.UUIDField(read_only=True)
    mode = serializers.CharField(read_only=True)
    labels = serializers.DictField(child=serializers.FloatField(), read_only=True)
    text = serializers.CharField(read_only=True)
    report = serializers.BooleanField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)


class EmojiSerializer(serializers.Serializer):
    emoji = serializers.ChoiceField(choices=Emoji.values)
    op = serializers.ChoiceField(choices=["add", "remove"], default="add")


class EmojiCountsSerializer(serializers.Serializer):
    emojis = serializers.DictField(child=serializers.IntegerField())


class ReportSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=512)


class ReportResultSerializer(serializers.Serializer):
    message_id = serializers.UUIDField()
    reports = serializers.IntegerField()


SUBMISSION_RESULT = PolymorphicProxySerializer(
    component_name="SubmissionResult",
    serializers=[MessageSerializer, RankingResultSerializer, ReviewResultSerializer],
    resource_type_field_name=None,
)


class TaskListView(APIView):
    throttle_classes = [WindowThrottle]
    throttle_scope = "task_request"
    throttle_ip_scope = "task_request_ip"

    @extend_schema(operation_id="tasks_request", request=TaskRequestSerializer,
                   responses={201: TaskSerializer, **ERRORS},
                   description="Get the next task: `random` lets the queue pick what moves the data forward most.")
    def post(self, request):
        body = TaskRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        lang = body.validated_data.get("lang") or request.user.preferred_language
        task = services.task_request(user=request.user, task_type=body.validated_data["type"], lang=lang)
        return Response(task_data(task), status=status.HTTP_201_CREATED)


class TaskAvailableView(APIView):
    @extend_schema(operation_id="tasks_available",
                   parameters=[OpenApiParameter("lang", OpenApiTypes.STR, description="Language (BCP-47)")],
                   responses={200: OpenApiTypes.OBJECT, **ERRORS},
                   description="How many items each task type has for you right now: `{task_type: count}`.")
    def get(self, request):
        services.check_can_work(request.user)
        lang = request.query_params.get("lang") or request.user.preferred_language
        services.check_language(lang)
        return Response(selectors.task_availability(user=request.user, lang=lang, config=tree_config()))


class TaskDetailView(APIView):
    @extend_schema(operation_id="tasks_retrieve", responses={200: TaskSerializer, **ERRORS})
    def get(self, request, task_id):
        task = get_object_or_404(Task, pk=task_id, user=request.user)
        return Response(task_data(task))


class TaskAckView(APIView):
    @extend_schema(operation_id="tasks_ack", request=None, responses={200: TaskSerializer, **ERRORS})
    def post(self, request, task_id):
        return Response(task_data(services.task_ack(user=request.user, task_id=task_id)))


class TaskNackView(APIView):
    @extend_schema(operation_id="tasks_nack", request=NackSerializer, responses={200: TaskSerializer, **ERRORS},
                   description="Skip the task; its item is not offered to you again.")
    def post(self, request, task_id):
        body = NackSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        task = services.task_nack(user=request.user, task_id=task_id, reason=body.validated_data["reason"])
        return Response(task_data(task))


class TaskSubmitView(APIView):
    throttle_classes = [WindowThrottle]
    throttle_scope = "submission"
    throttle_ip_scope = "submission_ip"

    @extend_schema(operation_id="tasks_submit", request=SubmitSerializer,
                   responses={201: SUBMISSION_RESULT, **ERRORS})
    def post(self, request, task_id):
        body = SubmitSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        result = services.task_submit(user=request.user, task_id=task_id, **body.validated_data)
        if isinstance(result, Ranking):
            output = RankingResultSerializer(result).data
        elif isinstance(result, Review):
            output = ReviewResultSerializer(result).data
        else:
            output = MessageSerializer(result, context={"request": request}).data
        return Response(output, status=status.HTTP_201_CREATED)


class MessageDetailView(APIView):
    @extend_schema(operation_id="messages_retrieve", responses={200: MessageSerializer, **ERRORS})
    def get(self, request, message_id):
        return Response(MessageSerializer(selectors.visible_message(message_id), context={"request": request}).data)


class MessageTreeView(APIView):
    @extend_schema(operation_id="messages_tree", responses={200: OpenApiTypes.OBJECT, **ERRORS},
                   description="The message's whole tree as an oasst export-format tree (deleted messages left out).")
    def get(self, request, message_id):
        message = selectors.visible_message(message_id)
        messages = selectors.visible_messages().filter(tree_id=message.tree_id).select_related("tree")
        messages = list(messages)
        return Response(oasst_format.tree_node(messages[0].tree, messages))


class MessageEmojiView(APIView):
    @extend_schema(operation_id="messages_emoji", request=EmojiSerializer, responses={200: EmojiCountsSerializer,
                                                                                       **ERRORS})
    def post(self, request, message_id):
        body = EmojiSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        counts = services.emoji_set(user=request.user, message_id=message_id, **body.validated_data)
        return Response({"emojis": counts})


class MessageReportView(APIView):
    @extend_schema(operation_id="messages_report", request=ReportSerializer,
                   responses={201: ReportResultSerializer, **ERRORS})
    def post(self, request, message_id):
        body = ReportSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        flag = services.message_report(user=request.user, message_id=message_id,
                                       reason=body.validated_data["reason"])
        return Response({"message_id": flag.message_id, "reports": flag.reports}, status=status.HTTP_201_CREATED)


class AcceptTosView(APIView):
    @extend_schema(operation_id="users_me_accept_tos", request=None, responses={200: UserSerializer, **ERRORS})
    def post(self, request):
        return Response(UserSerializer(account_services.tos_accept(user=request.user)).data)
