"""Stored and reflected XSS: classic payloads go in through the services (prompts, replies, review
comments, report reasons, display names, moderation reasons, search parameters) and every page that
shows user text, the admin's included, is parsed: no script element, event-handler attribute,
htmx `hx-on` attribute or javascript:/vbscript:/data: URL may come out of them.

Every payload carries a marker `xss<n>`; a page must show the marker (the user text is on it) and
no dangerous construct may carry it."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.test import Client
from django.urls import reverse

from oasst import moderation as user_moderation
from oasst import services as account_services
from oasst.errors import NotFound
from oasst.templatetags.oasst_tags import render_markdown
from ranking.services import leaderboard_rebuild
from tasks import services
from tasks.models import Message, Task
from tests.factories import AdminFactory, UserFactory
from tests.tasks.builders import reply_to, review_of, write_prompt

TEMPLATES = [
    "<script>alert('xss{n}')</script>",
    "<img src=x onerror=alert('xss{n}')>",
    "<svg onload=alert('xss{n}')>",
    "<svg><script>alert('xss{n}')</script></svg>",
    "<svg><a xlink:href=\"javascript:alert('xss{n}')\"><text>x</text></a></svg>",
    "[click](javascript:alert('xss{n}'))",
    "[click](JaVaScRiPt:alert('xss{n}'))",
    "[click](&#106;avascript:alert('xss{n}'))",
    "[click](javascript&#58;alert('xss{n}'))",
    "[click]( vbscript:msgbox('xss{n}'))",
    "![img](javascript:alert('xss{n}'))",
    "![img](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+ 'xss{n}')",
    "[data](data:text/html,<script>alert('xss{n}')</script>)",
    "[ref]\n\n[ref]: javascript:alert('xss{n}')",
    "<javascript:alert('xss{n}')>",
    "<http://example.org/\" onmouseover=\"alert('xss{n}')>",
    "[x](http://example.org/\" onmouseover=\"alert('xss{n}'))",
    "<a href=\"javascript:alert('xss{n}')\">x</a>",
    "<iframe src=\"javascript:alert('xss{n}')\"></iframe>",
    "<object data=\"data:text/html,<script>alert('xss{n}')</script>\"></object>",
    "<div style=\"background:url(javascript:alert('xss{n}'))\">styled</div>",
    "<<script>alert('xss{n}');//<</script>",
    "<scr<script>ipt>alert('xss{n}')</scr</script>ipt>",
    "<b onmouseover=alert('xss{n}')>unclosed",
    "&lt;script&gt;alert('xss{n}')&lt;/script&gt;",
    "\"><script>alert('xss{n}')</script>",
    "'><img src=x onerror=alert('xss{n}')>",
    "<details open ontoggle=alert('xss{n}')>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert('xss{n}')>",
    "```html\n<script>alert('xss{n}')</script>\n```",
    "<form action=javascript:alert('xss{n}')><button>go</button></form>",
    "<div hx-on:click=\"alert('xss{n}')\" hx-get=\"/\">htmx</div>",
    "{{{{ request.user.password }}}} {{% debug %}} xss{n}",
]
PAYLOADS = [template.format(n=n) for n, template in enumerate(TEMPLATES)]
SHORT_PAYLOADS = [payload for payload in PAYLOADS if len(payload) <= account_services.DISPLAY_NAME_MAX]
MARK = re.compile(r"xss\d+")
# A CSRF token is 64 random letters and digits: now and then it spells a marker (…Kxss7M5V…); it is not user text.
CSRF_TOKEN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z0-9]{64}(?![A-Za-z0-9])")
DANGEROUS_SCHEMES = ("javascript", "vbscript", "data")
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "xlink:href", "data", "poster", "background", "srcdoc",
                  "lowsrc", "dynsrc", "codebase", "cite"}
# Attributes where escaped user text may stand (a form field's value, a tooltip, a link to a web page).
TEXT_ATTRIBUTES = {"value", "title", "alt", "placeholder", "aria-label", "href"}


def _scheme(url: str) -> str:
    """The scheme a browser would see: it ignores whitespace and control characters inside it."""
    compact = re.sub(r"[\x00-\x20]", "", url).lower()
    return compact.split(":", 1)[0] if ":" in compact else ""


class ExecutableMarkupScanner(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.raw_text_tag: str | None = None

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            value = value or ""
            if name.startswith("on") or name.startswith(("hx-on", "data-hx-on")):
                self.problems.append(f"<{tag} {name}={value!r}>: event handler")
            if name in URL_ATTRIBUTES and _scheme(value) in DANGEROUS_SCHEMES:
                self.problems.append(f"<{tag} {name}={value!r}>: {_scheme(value)}: URL")
            if name == "style" and re.search(r"javascript:|expression\(", value, re.IGNORECASE):
                self.problems.append(f"<{tag} style={value!r}>: script in style")
            if name in ("hx-vals", "hx-headers") and re.sub(r"\s", "", value).startswith(("js:", "javascript:")):
                self.problems.append(f"<{tag} {name}={value!r}>: htmx evaluates it")
            if MARK.search(CSRF_TOKEN.sub("", value)) and name not in TEXT_ATTRIBUTES:
                self.problems.append(f"<{tag} {name}={value!r}>: user text in an attribute")
        if tag == "script":
            src = dict(attrs).get("src")
            if src is not None and not (src.startswith("/") and not src.startswith("//")):
                self.problems.append(f"<script src={src!r}>: script from elsewhere")
        if tag in ("script", "style", "iframe", "object", "embed", "frame", "base", "meta", "link"):
            if any(MARK.search(value or "") for _name, value in attrs):
                self.problems.append(f"<{tag}> made from user text")
        if tag in ("script", "style"):
            self.raw_text_tag = tag

    def handle_endtag(self, tag):
        if tag == self.raw_text_tag:
            self.raw_text_tag = None

    def handle_data(self, data):
        if self.raw_text_tag and MARK.search(data):
            self.problems.append(f"<{self.raw_text_tag}> holds user text: {data[:80]!r}")


def executable_markup(html: str) -> list[str]:
    scanner = ExecutableMarkupScanner()
    scanner.feed(html)
    scanner.close()
    return scanner.problems


def markers_in(html: str) -> set[str]:
    return set(MARK.findall(html))


def assert_safe(response, *, shows: set[str] | str = frozenset()) -> str:
    assert response.status_code == 200, (response.status_code, response.get("Location"))
    html = response.content.decode()
    assert executable_markup(html) == []
    wanted = {shows} if isinstance(shows, str) else set(shows)
    assert wanted <= markers_in(html), f"the page does not show {sorted(wanted - markers_in(html))}"
    return html


def marker(payload: str) -> str:
    return MARK.search(payload).group()


# --- The scanner itself -----------------------------------------------------------------------------


@pytest.mark.parametrize("html", [
    "<script>alert('xss1')</script>",
    "<img src=x onerror=alert(1)>",
    "<a href=' jav&#x09;ascript:alert(1)'>x</a>",
    "<a href='&#106;avascript:alert(1)'>x</a>",
    "<iframe src='data:text/html,x'></iframe>",
    "<div hx-on:click='alert(1)'></div>",
    "<div hx-vals='js:{a: alert(1)}'></div>",
    "<script src='https://evil.example/x.js'></script>",
    "<script src='//evil.example/x.js'></script>",
    "<div style='width: expression(alert(1))'></div>",
    "<svg><a xlink:href='javascript:alert(1)'>x</a></svg>",
])
def test_scanner_finds_executable_markup(html):
    assert executable_markup(html)


def test_scanner_accepts_escaped_user_text():
    html = ('<script src="/static/app.js"></script><p>&lt;script&gt;alert(\'xss1\')&lt;/script&gt;</p>'
            '<input value="&quot;&gt;&lt;script&gt;xss2"><a href="https://example.org/xss3">x</a>')
    assert executable_markup(html) == []
    assert markers_in(html) == {"xss1", "xss2", "xss3"}


# --- The Markdown filter -----------------------------------------------------------------------------


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_markdown_renders_no_executable_markup(payload):
    html = render_markdown(payload)
    assert executable_markup(html) == []
    assert "<script" not in html.lower()


# --- Pages and admin -------------------------------------------------------------------------------


@pytest.fixture
def xss_world(db, small_trees, moderators_group) -> dict:
    """Every payload as a prompt (by an author whose display name is a payload when it fits), one tree
    grown to ranking with payload replies, payload review comments, reports, bans and moderation reasons."""
    prompts = []
    for n, payload in enumerate(PAYLOADS):
        author = UserFactory(username=f"author{n}")
        if n < len(SHORT_PAYLOADS):
            account_services.profile_update(user=author, display_name=SHORT_PAYLOADS[n], preferred_language="en",
                                            show_on_leaderboard=True)
        prompts.append(write_prompt(author, text=payload))

    # One tree grows to ranking: its prompt and replies are payloads too.
    asker, first, second, reviewer = (UserFactory(username=name) for name in ("asker", "first", "second", "rev"))
    for user, payload in ((first, SHORT_PAYLOADS[0]), (second, SHORT_PAYLOADS[1]), (reviewer, SHORT_PAYLOADS[2])):
        account_services.profile_update(user=user, display_name=payload, preferred_language="en",
                                        show_on_leaderboard=True)
    ranked_prompt = write_prompt(asker, text=f"Which is best? {PAYLOADS[5]}")
    review_of(reviewer, ranked_prompt)
    services.lottery_activate(lang="en")  # activation runs on commit, which the test transaction never does
    replies = [reply_to(first, ranked_prompt, f"First {PAYLOADS[0]}"),
               reply_to(second, ranked_prompt, f"Second {PAYLOADS[1]}")]
    for reply in replies:
        review_of(reviewer, reply)

    viewer = UserFactory(username="viewer")
    account_services.profile_update(user=viewer, display_name=SHORT_PAYLOADS[3], preferred_language="en",
                                    show_on_leaderboard=True)
    rank_task = services.task_request(user=viewer, task_type="rank_assistant_replies", lang="en")

    # Label tasks on the payload prompts, each reviewed with a payload comment and reported.
    label_tasks = []
    for k in range(-(-len(PAYLOADS) // 8)):
        labeller = UserFactory(username=f"labeller{k}")
        for _ in range(8):
            try:
                task = services.task_request(user=labeller, task_type="label_initial_prompt", lang="en")
            except NotFound:
                break
            label_tasks.append(task)
    for task in label_tasks[: len(PAYLOADS) // 2]:
        comment = PAYLOADS[len(label_tasks) % len(PAYLOADS)]
        services.labels_submit(user=task.user, task_id=task.pk, labels={"spam": 0, "lang_mismatch": 0},
                               text=f"Comment {comment}", report=True)
    for n, prompt in enumerate(prompts[:6]):
        services.message_report(user=viewer, message_id=prompt.pk, reason=PAYLOADS[n][:500])

    moderator = UserFactory(username="moderator", is_staff=True)
    moderator.groups.add(moderators_group)
    services.message_delete(actor=moderator, message_id=prompts[-1].pk, reason=PAYLOADS[7])
    services.message_undelete(actor=moderator, message_id=prompts[-1].pk, reason=PAYLOADS[8])
    banned = UserFactory(username="banned")
    account_services.profile_update(user=banned, display_name=SHORT_PAYLOADS[4], preferred_language="en",
                                    show_on_leaderboard=True)
    user_moderation.user_ban(actor=moderator, user_id=banned.pk, reason=PAYLOADS[9])
    for frame in ("day", "week", "month", "total"):
        leaderboard_rebuild(frame=frame)

    admin = AdminFactory(username="root")
    return {"prompts": prompts, "ranked_prompt": ranked_prompt, "replies": replies, "viewer": viewer,
            "rank_task": rank_task, "label_tasks": label_tasks, "moderator": moderator, "banned": banned,
            "authors": [prompt.author for prompt in prompts], "admin": admin}


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_message_pages_show_every_payload_as_text(xss_world):
    client = _client(xss_world["viewer"])
    for prompt in xss_world["prompts"]:
        assert_safe(client.get(reverse("message-tree", args=[prompt.pk])), shows=marker(prompt.text))
    tree = assert_safe(client.get(reverse("message-tree", args=[xss_world["ranked_prompt"].pk])),
                       shows={"xss0", "xss1", "xss5"})
    assert "First " in tree and "Second " in tree
    shown = set()
    for page in (1, 2):
        shown |= markers_in(assert_safe(client.get(reverse("messages"), {"page": page})))
    assert {marker(p) for p in PAYLOADS} <= shown


def test_message_search_reflects_the_query_as_text(xss_world):
    client = _client(xss_world["viewer"])
    for payload in PAYLOADS:
        assert_safe(client.get(reverse("messages"), {"q": payload}), shows=marker(payload))
        htmx = client.get(reverse("messages"), {"q": payload}, headers={"HX-Request": "true"})
        assert executable_markup(htmx.content.decode()) == []


def test_task_pages_show_payload_conversations_as_text(xss_world):
    shown = set()
    for task in xss_world["label_tasks"]:
        if Task.objects.get(pk=task.pk).is_open:
            shown |= markers_in(assert_safe(_client(task.user).get(reverse("task", args=[task.pk]))))
    assert len(shown) >= len(PAYLOADS) // 3
    rank_page = assert_safe(_client(xss_world["viewer"]).get(reverse("task", args=[xss_world["rank_task"].pk])),
                            shows={"xss0", "xss1", "xss5"})
    assert rank_page.count('class="md"') >= 3


def test_refused_submission_shows_the_typed_payload_back_as_text(xss_world):
    author = UserFactory(username="typist")
    client = _client(author)
    for payload in PAYLOADS[:6]:
        task = services.task_request(user=author, task_type="initial_prompt", lang="en")
        response = client.post(reverse("task-submit", args=[task.pk]), {"text": payload + " x" * 2000})
        assert response.status_code == 400
        assert executable_markup(response.content.decode()) == []
        assert marker(payload) in response.content.decode()


def test_preview_renders_payloads_as_text(xss_world):
    client = _client(xss_world["viewer"])
    for payload in PAYLOADS:
        response = client.post(reverse("preview"), {"text": payload})
        assert executable_markup(response.content.decode()) == []
        assert marker(payload) in response.content.decode()


def test_leaderboard_shows_payload_display_names_as_text(xss_world):
    for client in (_client(xss_world["viewer"]), Client()):
        html = assert_safe(client.get(reverse("leaderboard-frame", args=["total"])),
                           shows={marker(p) for p in SHORT_PAYLOADS[:3]})
        assert "<svg" in html  # the chart, drawn with the names, is on the page


def test_profile_pages_show_payload_names_and_texts_as_text(xss_world):
    author = xss_world["authors"][0]
    client = _client(author)
    assert_safe(client.get(reverse("profile")), shows="xss0")
    assert_safe(client.get(reverse("profile"), headers={"HX-Request": "true", "HX-Target": "contributions"}),
                shows="xss0")
    assert_safe(client.get(reverse("profile-settings")), shows="xss0")
    assert_safe(client.get(reverse("profile-token")), shows="xss0")
    assert_safe(client.get(reverse("profile-delete")), shows="xss0")
    assert_safe(client.get(reverse("dashboard")), shows="xss0")


def test_refused_display_name_is_shown_back_as_text(xss_world):
    client = _client(xss_world["viewer"])
    response = client.post(reverse("profile-settings"), {"display_name": PAYLOADS[0] + "x" * 80,
                                                         "preferred_language": "en"})
    assert response.status_code == 400
    assert executable_markup(response.content.decode()) == []


def test_terms_page_drops_a_javascript_next_url(xss_world):
    client = _client(UserFactory(username="newcomer", tos_accepted_at=None))
    for url in ("javascript:alert('xss1')", " javascript:alert('xss2')", "data:text/html,<script>xss3</script>"):
        response = client.get(reverse("terms"), {"next": url})
        assert response.status_code == 200
        assert executable_markup(response.content.decode()) == []
        assert "javascript:" not in response.content.decode()


def _admin_pages(world) -> list[tuple[str, set[str]]]:
    prompts = world["prompts"]
    pages = [(reverse("admin:index"), set()),
             (reverse("admin:tasks_message_changelist"), {"xss0", "xss1"}),
             (reverse("admin:tasks_message_changelist") + "?q=xss", {"xss0"}),
             (reverse("admin:tasks_flaggedmessage_changelist") + "?processed__exact=0", {"xss0"}),
             (reverse("admin:oasst_user_changelist"), {"xss0"}),
             (reverse("admin:oasst_user_changelist") + "?q=%3Cscript%3Exss99", {"xss99"}),
             (reverse("admin:oasst_moderationevent_changelist"), {"xss7", "xss8", "xss9"}),
             (reverse("admin:trollboard") + "?frame=total", set()),
             (reverse("admin:moderation_statistics"), set()),
             (reverse("admin:tasks_messagetree_change", args=[world["ranked_prompt"].tree_id]), {"xss0", "xss1"}),
             (reverse("admin:oasst_user_change", args=[world["banned"].pk]), {marker(SHORT_PAYLOADS[4]), "xss9"}),
             (reverse("admin:oasst_user_change", args=[world["authors"][0].pk]), {"xss0"})]
    for prompt in prompts:
        pages.append((reverse("admin:tasks_message_change", args=[prompt.pk]), {marker(prompt.text)}))
    for flag_id in Message.objects.filter(flag__isnull=False).values_list("flag__pk", flat=True)[:8]:
        pages.append((reverse("admin:tasks_flaggedmessage_change", args=[flag_id]), set()))
    for event_id in world["moderator"].moderation_events.values_list("pk", flat=True):
        pages.append((reverse("admin:oasst_moderationevent_change", args=[event_id]), set()))
    return pages


@pytest.mark.parametrize("who", ["admin", "moderator"])
def test_admin_pages_show_payloads_as_text(xss_world, who):
    client = _client(xss_world[who])
    for url, shows in _admin_pages(xss_world):
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert executable_markup(html) == [], url
        assert shows <= markers_in(html), (url, shows - markers_in(html))


def test_admin_edit_with_payload_keeps_it_text_in_the_recent_actions(xss_world):
    client = _client(xss_world["admin"])
    prompt = xss_world["prompts"][1]
    url = reverse("admin:tasks_message_change", args=[prompt.pk])
    response = client.post(url, {"text": PAYLOADS[2], "reason": PAYLOADS[3]})
    assert response.status_code == 302
    assert Message.objects.get(pk=prompt.pk).text == PAYLOADS[2]
    assert_safe(client.get(reverse("admin:index")), shows="xss2")
    assert_safe(client.get(url), shows={"xss1", "xss2"})


def test_the_scanner_does_not_take_a_csrf_token_that_spells_a_marker_for_user_text():
    token = "NZJ9WOLqeLyTbvMf6HISmfqhGVBFRorZjbYhd3mjMMG4QKxss7M5VYlltHzKrq0j"
    assert executable_markup(f'<body hx-headers=\'{{"X-CSRFToken": "{token}"}}\'>') == []
    assert executable_markup('<div data-query="xss7">x</div>') != []  # a marker outside a token still counts
