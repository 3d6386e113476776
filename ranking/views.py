"""The leaderboard page: one time frame's materialised board, 50 entries a page, the visitor's own row
and the entries around it, and a bar chart of the top ten drawn as inline SVG on the server."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count, Max, Q
from django.http import Http404
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.text import Truncator
from django.utils.timesince import timesince
from django.utils.translation import gettext_lazy as _

from oasst.text import hidden_as_text
from ranking import selectors
from ranking.models import Frame, LeaderboardEntry

PAGE_SIZE = 50
CHART_TOP = 10
FRAME_LABELS = {
    Frame.DAY: (_("Day"), _("Points in the last 24 hours")),
    Frame.WEEK: (_("Week"), _("Points in the last 7 days")),
    Frame.MONTH: (_("Month"), _("Points in the last 30 days")),
    Frame.TOTAL: (_("Total"), _("Points of all time")),
}

# Chart geometry in SVG user units; the SVG scales to its container through its viewBox.
CHART_WIDTH = 360
CHART_ROW = 38
CHART_BAR_HEIGHT = 12
CHART_BAR_MAX = 300  # leaves room right of the longest bar for its score
CHART_NAME_CHARS = 40


@dataclass(frozen=True)
class ChartBar:
    rank: int
    name: str
    short_name: str
    score: int
    width: float
    mine: bool
    label_y: int
    bar_y: int
    value_x: float
    value_y: int


def chart_bars(entries: list[LeaderboardEntry], *, own_user_id: int | None) -> list[ChartBar]:
    """One bar per entry, its length proportional to the score (the first entry's bar is the longest)."""
    top = max((entry.score for entry in entries), default=0)
    bars = []
    for row, entry in enumerate(entries):
        width = round(CHART_BAR_MAX * entry.score / top, 1) if top > 0 else 0.0
        width = max(width, 2.0) if entry.score > 0 else width  # a tiny score stays visible
        y = row * CHART_ROW
        name = hidden_as_text(entry.user.public_name)  # SVG text holds no marker element: written out as [U+202E]
        bars.append(ChartBar(
            rank=entry.rank, name=name, short_name=Truncator(name).chars(CHART_NAME_CHARS), score=entry.score,
            width=width, mine=entry.user_id == own_user_id, label_y=y + 13, bar_y=y + 18,
            value_x=round(width + 6, 1), value_y=y + 28,
        ))
    return bars


def _page_number(raw: str | None, pages: int) -> int:
    try:
        number = int(raw or 1)
    except ValueError:
        number = 1
    return min(max(number, 1), pages)


def leaderboard(request, frame: str = Frame.WEEK):
    """A fixed number of queries whatever the board's size: the visitor's ranks, the board's size and
    build time, and one query for the page, the top ten and the window around the visitor together."""
    if frame not in Frame.values:
        raise Http404(f"Unknown time frame {frame!r}.")
    user = request.user
    hidden = user.is_authenticated and not user.show_on_leaderboard
    mine = selectors.leaderboard_ranks(user).get(frame) if user.is_authenticated and not hidden else None

    board = LeaderboardEntry.objects.filter(frame=frame).aggregate(size=Count("pk"), built_at=Max("built_at"))
    pages = max(1, -(-board["size"] // PAGE_SIZE))
    page = _page_number(request.GET.get("page"), pages)
    first, last = (page - 1) * PAGE_SIZE + 1, page * PAGE_SIZE

    # A rebuild numbers the entries 1..n, so rank ranges select the page, the top and the window.
    wanted = Q(rank__range=(first, last)) | Q(rank__lte=CHART_TOP)
    if mine:
        wanted |= Q(rank__range=(mine.rank - selectors.AROUND, mine.rank + selectors.AROUND))
    rows = list(selectors.leaderboard(frame).filter(wanted))
    entries = [entry for entry in rows if first <= entry.rank <= last]
    top = [entry for entry in rows if entry.rank <= CHART_TOP]
    mine_on_page = bool(mine) and first <= mine.rank <= last
    around = [] if not mine or mine_on_page else [
        entry for entry in rows if abs(entry.rank - mine.rank) <= selectors.AROUND]

    built_at = board["built_at"]
    caption = FRAME_LABELS[frame][1]
    return render(request, "ranking/leaderboard.html", {
        "frame": frame, "caption": caption, "entries": entries, "around": around,
        "own_user_id": user.pk if mine else None, "mine": mine, "mine_on_page": mine_on_page,
        "mine_page": (mine.rank - 1) // PAGE_SIZE + 1 if mine else None, "hidden": hidden,
        "size": board["size"], "page": page, "pages": pages,
        "built_at": built_at,
        "built_ago": timesince(built_at) if built_at and timezone.now() - built_at >= timedelta(minutes=1) else "",
        "tabs": [{"frame": f, "label": FRAME_LABELS[f][0], "url": reverse("leaderboard-frame", args=[f]),
                  "current": f == frame} for f in Frame.values],
        "chart": {"bars": chart_bars(top, own_user_id=user.pk if mine else None), "width": CHART_WIDTH,
                  "height": max(len(top), 1) * CHART_ROW, "bar_height": CHART_BAR_HEIGHT},
    })
