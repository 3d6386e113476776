"""Template filters: Markdown rendered and sanitised, so user text can never inject HTML or script,
and invisible or direction-changing characters shown as visible, inert markers (oasst.text)."""

import nh3
from django import template
from django.utils.html import conditional_escape
from django.utils.safestring import mark_safe
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore

from oasst.text import hidden_as_text, mark_hidden_in_html

register = template.Library()

ALLOWED_TAGS = {"p", "br", "hr", "strong", "em", "del", "code", "pre", "blockquote", "ul", "ol", "li",
                "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "a"}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}}


# CommonMark with raw HTML off: "<script>" in a message is shown as text. nh3 then removes anything
# not allowed below, as a second line of defence.
MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(["table", "strikethrough"])


def _hidden_out_of_attributes(state: StateCore) -> None:
    """Write hidden characters out as text in attributes (a link's title, a code block's language),
    where no marker element can go, so that the rendered HTML holds them in text only."""
    pending = list(state.tokens)
    while pending:
        token = pending.pop()
        token.attrs = {name: hidden_as_text(value) if isinstance(value, str) else value
                       for name, value in token.attrs.items()}
        token.info = hidden_as_text(token.info)
        pending.extend(token.children or [])


MARKDOWN.core.ruler.push("hidden_out_of_attributes", _hidden_out_of_attributes)


def render_markdown(text: str) -> str:
    html = MARKDOWN.render(text or "")
    html = nh3.clean(html, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES, url_schemes={"http", "https", "mailto"},
                     link_rel="nofollow noopener noreferrer")
    return mark_hidden_in_html(html)  # after nh3, which would drop the markers' span elements


@register.filter(name="markdown")
def markdown_filter(text: str) -> str:
    return mark_safe(render_markdown(text))  # noqa: S308 - nh3 removed every tag and attribute not allowed above


@register.filter(name="mark_hidden")
def mark_hidden_filter(text: str) -> str:
    """User text (an excerpt, a name): escaped unless a filter before this one escaped it, invisible and
    direction-changing characters marked."""
    return mark_safe(mark_hidden_in_html(conditional_escape(text)))  # noqa: S308 - escaped; markers are fixed markup
