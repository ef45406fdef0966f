"""``indexer duplicates``: every group of duplicates in a tenant's catalog.

Pages through the catalog (``GET /v1/items``) and asks for the duplicates of each page
(``POST /v1/duplicates``), then joins the pairs into groups: items that are copies of copies
end up in one group. Exact copies (same bytes), near-duplicates (the same photo or shot,
edited, verified by its keypoints: lookalike/verify.py) and colour variants (the same shot in
another colour) are reported apart. Items that could not be verified are counted: too plain
to have keypoints, indexed before keypoints were stored (until ``indexer reindex``), or
every item when the service computes no keypoints (``LOOKALIKE_DUPLICATE_KEYPOINTS=false``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from indexer.client import APIClient
from indexer.progress import Progress

PAGE = 100


def star_groups(pairs: list[tuple[str, str]]) -> list[list[str]]:
    """Groups where every item is a direct duplicate of the group's first item.

    Near-duplication is not transitive (a ~ b and b ~ c does not make a ~ c), so joining
    pairs into connected groups would chain unrelated items together. Instead, the item with
    the most duplicates leads a group of them, then the next one among the rest, and so on.
    """
    neighbours: dict[str, set[str]] = {}
    for a, b in pairs:
        if a != b:
            neighbours.setdefault(a, set()).add(b)
            neighbours.setdefault(b, set()).add(a)
    placed: set[str] = set()
    result = []
    for leader in sorted(neighbours, key=lambda x: (-len(neighbours[x]), x)):
        if leader in placed:
            continue
        members = sorted(n for n in neighbours[leader] if n not in placed)
        if members:
            result.append([leader, *members])
            placed.update([leader, *members])
    return sorted(result, key=lambda g: (-len(g), g))


def groups(pairs: list[tuple[str, str]]) -> list[list[str]]:
    """Connected groups of the pairs (right for exact copies: sameness is transitive), each
    sorted, largest first."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        parent[find(a)] = find(b)
    joined: dict[str, list[str]] = {}
    for x in list(parent):
        joined.setdefault(find(x), []).append(x)
    result = [sorted(g) for g in joined.values() if len(g) > 1]
    return sorted(result, key=lambda g: (-len(g), g))


@dataclass
class DuplicateReport:
    threshold: float | None = None
    items: int = 0
    exact: list[list[str]] = field(default_factory=list)
    near: list[list[str]] = field(default_factory=list)
    variants: list[list[str]] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    # Items whose near-duplicates could not be verified, by why (api/duplicates.py).
    unverifiable: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "items": self.items,
            "exact": self.exact,
            "near": self.near,
            "variants": self.variants,
            "near_pair_scores": self.scores,
            "unverifiable": self.unverifiable,
        }

    def summary(self) -> str:
        lines = [
            f"{self.items} items: {len(self.exact)} groups of exact copies, {len(self.near)} "
            f"groups of near-duplicates, {len(self.variants)} groups of colour variants "
            f"(threshold {self.threshold})"
        ]
        lines += [f"  exact:    {', '.join(g)}" for g in self.exact]
        lines += [f"  near:     {g[0]} ~ {', '.join(g[1:])}" for g in self.near]
        lines += [f"  variants: {g[0]} ~ {', '.join(g[1:])}" for g in self.variants]
        lines += unverifiable_lines(self.unverifiable)
        return "\n".join(lines)


UNVERIFIABLE = {
    "needs_reindex": "indexed before keypoints were stored (or in an older keypoint format), "
    "exact copies only until `indexer reindex`",
    "too_plain": "too plain to verify (too few keypoints): exact copies only",
}
# The service's switch, not the items': said once, without listing the whole catalog.
DISABLED = (
    "near-duplicates and colour variants not looked for: the service computes no keypoints "
    "(LOOKALIKE_DUPLICATE_KEYPOINTS=false); exact copies only"
)


def unverifiable_lines(unverifiable: dict[str, list[str]], shown: int = 10) -> list[str]:
    lines = []
    for state, ids in sorted(unverifiable.items()):
        if state == "disabled":
            lines.append(f"  {len(ids)} items: {DISABLED}")
            continue
        more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
        lines.append(
            f"  {len(ids)} items {UNVERIFIABLE.get(state, state)}: {', '.join(ids[:shown])}{more}"
        )
    return lines


def duplicate_report(
    client: APIClient,
    *,
    threshold: float | None = None,
    tenant: str | None = None,
    out: TextIO = sys.stderr,
) -> DuplicateReport:
    report = DuplicateReport(threshold=threshold)
    exact: list[tuple[str, str]] = []
    near: list[tuple[str, str]] = []
    variants: list[tuple[str, str]] = []
    cursor: str | None = None
    progress: Progress | None = None
    while True:
        page = client.list_items(cursor=cursor, limit=PAGE, tenant=tenant)
        if progress is None:
            progress = Progress(
                out, int(page.get("total") or 0), label="duplicates", unit="items/s"
            )
        ids = [item["id"] for item in page["items"]]
        if ids:
            answer = client.duplicates(ids, tenant=tenant, threshold=threshold)
            report.threshold = answer["threshold"]
            for entry in answer["items"]:
                exact.extend((entry["id"], e["id"]) for e in entry["exact"])
                for n in entry["near"]:
                    pair = tuple(sorted((entry["id"], n["id"])))
                    near.append((pair[0], pair[1]))
                    report.scores[f"{pair[0]} ~ {pair[1]}"] = n["score"]
                variants.extend((entry["id"], v["id"]) for v in entry.get("variants", []))
                state = entry.get("verification", "verified")
                if state != "verified":
                    report.unverifiable.setdefault(state, []).append(entry["id"])
        report.items += len(ids)
        progress.update(done=report.items, failed=0)
        cursor = page.get("next_cursor")
        if not cursor:
            break
    if progress is not None:
        progress.update(done=report.items, failed=0, force=True)
        progress.finish()
    report.exact = groups(exact)
    report.near = star_groups(near)
    report.variants = star_groups(variants)
    return report
