"""Schema-driven fuzzing of the REST API: schemathesis generates requests for every operation of
the OpenAPI schema that the live server serves at /api/v1/schema/, sends them with a contributor's
and a moderator's token, and checks that no answer is a server error and that every answer matches
its documented status codes, content type and response schema.

A fixed number of examples per operation and derandomized Hypothesis keep the run short and the
same on every machine. Path parameters are drawn from the ids of a small real world half the time,
so the fuzzer reaches the code behind the 404s."""

from __future__ import annotations

import pytest
import requests
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tasks import services
from tests.factories import PASSWORD, UserFactory
from tests.tasks.builders import reply_to, review_of, write_prompt

EXAMPLES_PER_OPERATION = 5
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
SCHEMA_PATH = "/api/v1/schema/"


def _operations() -> list[tuple[str, str]]:
    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    return sorted((method.upper(), path) for path, methods in paths.items() for method in methods)


OPERATIONS = _operations()


@pytest.fixture
def world(transactional_db, small_trees, moderators_group) -> dict:
    """A contributor who accepted the terms, a moderator, and one tree with a reviewed prompt, a reply
    in the flagged queue and an open review task of the contributor."""
    author, reviewer = UserFactory(), UserFactory()
    contributor = UserFactory()
    moderator = UserFactory(is_staff=True)
    moderator.groups.add(moderators_group)
    prompt = write_prompt(author, text="How do tides work?")
    review_of(reviewer, prompt)
    reply = reply_to(reviewer, prompt, "The moon pulls the oceans.")
    flag = services.message_report(user=contributor, message_id=reply.pk, reason="Looks wrong")
    task = services.task_request(user=contributor, task_type="label_assistant_reply", lang="en")
    return {
        "tokens": {"contributor": _token_from_endpoint(contributor), "moderator": _token_from_endpoint(moderator)},
        "ids": {"message_id": [str(prompt.pk), str(reply.pk)], "task_id": [str(task.pk)],
                "tree_id": [str(prompt.tree_id)], "flag_id": [flag.pk],
                "frame": ["day", "week", "month", "total"]},
    }


def _token_from_endpoint(user) -> str:
    response = APIClient().post("/api/v1/auth/token/", {"username": user.username, "password": PASSWORD},
                                format="json")
    assert response.status_code == 200, response.content
    return response.json()["token"]


def _served_schema(base_url: str, token: str):
    return schemathesis.openapi.from_url(f"{base_url}{SCHEMA_PATH}", headers={"Authorization": f"Token {token}"})


def _fuzz(operation, *, base_url: str, token: str, ids: dict, mode: GenerationMode) -> int:
    """Run the operation's examples (valid or invalid input); returns how many requests were sent."""
    session = requests.Session()
    headers = {"Authorization": f"Token {token}"}
    sent = []

    @settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode), use_known_ids=st.booleans(), data=st.data())
    def run(case, use_known_ids, data):
        if use_known_ids:
            for name in list(case.path_parameters or {}):
                if name in ids:
                    case.path_parameters[name] = data.draw(st.sampled_from(ids[name]), label=name)
        response = case.call(base_url=base_url, session=session, headers=headers)
        sent.append(response.status_code)
        case.validate_response(response, checks=CHECKS, headers=headers)

    with session:  # closes the keep-alive connections: the server's threads end within the test
        run()
    return len(sent)


def _has_invalid_input(operation) -> bool:
    """Whether anything in the operation's input can be invalid: a body, or a constrained parameter
    (a free string, or nothing at all, cannot be made invalid)."""
    raw = operation.definition.raw
    constrained = [p for p in raw.get("parameters", []) if set(p.get("schema", {})) - {"type", "description"}
                   or p.get("schema", {}).get("type", "string") != "string"]
    return "requestBody" in raw or bool(constrained)


def test_served_schema_lists_every_operation_the_fuzzer_covers(live_server, world):
    schema = _served_schema(live_server.url, world["tokens"]["contributor"])
    served = sorted((result.ok().method.upper(), result.ok().path) for result in schema.get_all_operations())
    assert served == OPERATIONS
    assert len(OPERATIONS) >= 20


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_never_fails_with_5xx_nor_breaks_its_schema(live_server, world, method, path):
    schema = _served_schema(live_server.url, world["tokens"]["contributor"])
    operation = schema[path][method]
    modes = [GenerationMode.POSITIVE, *([GenerationMode.NEGATIVE] if _has_invalid_input(operation) else [])]
    sent = sum(_fuzz(operation, base_url=live_server.url, token=token, ids=world["ids"], mode=mode)
               for token in world["tokens"].values() for mode in modes)
    assert sent >= 2


# Regressions for what the fuzzer found.


def test_moving_an_unknown_tree_is_a_404_not_a_server_error(db, moderators_group):
    from tests.conftest import token_client

    moderator = UserFactory(is_staff=True)
    moderator.groups.add(moderators_group)
    response = token_client(moderator).post("/api/v1/moderation/trees/e3e70682-c209-1cac-a29f-6fbed82c07cd/move/",
                                            {"state": "halted_by_moderator", "reason": "x"}, format="json")
    assert response.status_code == 404
    assert response.json()["code"] == "tree_not_found"


def test_task_fields_present_only_for_some_task_types_are_optional_in_the_schema(db):
    task = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]["Task"]
    optional = {"conversation", "message_id", "reply_messages", "valid_labels", "mandatory_labels", "mode"}
    assert optional <= set(task["properties"])
    assert not optional & set(task.get("required", []))
    assert {"id", "type", "lang", "expires_at"} <= set(task["required"])
