"""Ranking consensus: ranked pairs (Tideman) over the complete rankings of one parent, and how far
each ranker agreed with it. Pure functions over ids."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from itertools import combinations


def kept_items(rankings: Sequence[Sequence[Hashable]]) -> list[Hashable]:
    """The items present in every ranking, in the order of the first ranking."""
    if not rankings:
        return []
    common = set(rankings[0]).intersection(*map(set, rankings[1:]))
    return [item for item in rankings[0] if item in common]


def ranked_pairs(rankings: Sequence[Sequence[Hashable]]) -> list[Hashable]:
    """Consensus order, best first, of the items present in every ranking.

    Pairwise wins are counted; majorities are sorted by strength (winning votes, then smaller
    losing votes, then a fixed order of the items so the result never depends on the order of the
    rankings); each is locked unless it closes a cycle; the locked graph's order is the result.
    """
    items = kept_items(rankings)
    if len(items) < 2:
        return items
    kept = set(items)
    position = [{item: i for i, item in enumerate(r for r in ranking if r in kept)} for ranking in rankings]
    wins = {(a, b): 0 for a in items for b in items if a != b}
    for pos in position:
        for a, b in combinations(items, 2):
            if pos[a] < pos[b]:
                wins[a, b] += 1
            else:
                wins[b, a] += 1
    tie_order = {item: repr(item) for item in items}
    majorities = [(a, b) for (a, b), n in wins.items() if n > wins[b, a]]
    majorities.sort(key=lambda p: (-wins[p], wins[p[1], p[0]], tie_order[p[0]], tie_order[p[1]]))
    locked: dict[Hashable, set] = {item: set() for item in items}

    def reaches(start, goal) -> bool:
        stack, seen = [start], set()
        while stack:
            node = stack.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                stack.extend(locked[node])
        return False

    for winner, loser in majorities:
        if not reaches(loser, winner):
            locked[winner].add(loser)
    # Order: repeatedly take the items nobody remaining beats (ties broken by total wins, then id).
    total_wins = {a: sum(wins[a, b] for b in items if b != a) for a in items}
    remaining = set(items)
    order = []
    while remaining:
        beaten = {loser for winner in remaining for loser in locked[winner] if loser in remaining}
        sources = sorted(remaining - beaten, key=lambda i: (-total_wins[i], tie_order[i]))
        order.append(sources[0])
        remaining.remove(sources[0])
    return order


def kendall_tau(order_a: Sequence[Hashable], order_b: Sequence[Hashable]) -> float:
    """Kendall's tau between two orders over their common items (1 same order, -1 reversed)."""
    common = [item for item in order_a if item in set(order_b)]
    if len(common) < 2:
        return 1.0
    pos_b = {item: i for i, item in enumerate(x for x in order_b if x in set(common))}
    concordant = discordant = 0
    for a, b in combinations(common, 2):  # a before b in order_a
        if pos_b[a] < pos_b[b]:
            concordant += 1
        else:
            discordant += 1
    return (concordant - discordant) / (concordant + discordant)


def kendalls_w(rankings: Sequence[Sequence[Hashable]]) -> float | None:
    """Kendall's coefficient of concordance over the kept items (1 = full agreement)."""
    items = kept_items(rankings)
    m, n = len(rankings), len(items)
    if m < 2 or n < 2:
        return None
    kept = set(items)
    rank_sums = dict.fromkeys(items, 0)
    for ranking in rankings:
        for rank, item in enumerate(r for r in ranking if r in kept):
            rank_sums[item] += rank + 1
    mean = m * (n + 1) / 2
    s = sum((total - mean) ** 2 for total in rank_sums.values())
    return 12 * s / (m ** 2 * (n ** 3 - n))
