"""Write ``worker/model/imagenet_tags.tsv``: each ImageNet-1k class's names and the names of
its useful parents in the WordNet noun hierarchy, what the worker's tags are made of.

ImageNet's class ids are WordNet 3.0 noun synsets (``n04120489`` is the noun at offset
04120489, "running shoe"), and the classifier's 1,000 outputs are in the order of the
sorted ids. Both come from registry packages, read here once; nothing is downloaded when
the service runs:

- the sorted ids: ``timm/data/_info/imagenet_synsets.txt`` in the ``timm`` wheel (read from
  the wheel file, timm is not installed): ``pip download timm==1.0.31 --no-deps -d DIR``;
- WordNet 3.0: Debian's ``wordnet-base`` (``/usr/share/wordnet/data.noun``).

A parent is kept when it is specific enough to be a search word: it covers at most
``--max-cover`` of the 1,000 classes ("shoe" covers 6, "dog" 118, "animal" 398; "object"
958 is dropped) and is not one of the generic words in ``ABSTRACT`` ("device", "container", ...).
Each line::

    index <TAB> wnid <TAB> names (|-separated) <TAB> parents (|-separated, nearest first)

Names are lower-case WordNet lemmas with spaces ("running shoe"); a parent's names are its
first ``--parent-names`` lemmas. Run::

    pip download timm==1.0.31 --no-deps -d build/timm
    python scripts/make_imagenet_tags.py --timm-wheel build/timm/timm-1.0.31-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import zipfile
from collections import deque
from pathlib import Path

SYNSETS_IN_WHEEL = "timm/data/_info/imagenet_synsets.txt"
WORDNET = Path("/usr/share/wordnet")
OUT = Path(__file__).resolve().parents[1] / "worker" / "model" / "imagenet_tags.tsv"
# Parents too general to search by, however few classes they cover (first lemmas).
ABSTRACT = {
    "entity",
    "physical entity",
    "object",
    "whole",
    "abstraction",
    "matter",
    "thing",
    "device",
    "container",
    "covering",
    "commodity",
    "consumer goods",
    "conveyance",
    "structure",
    "equipment",
    "implement",
    "instrument",
    "substance",
    "solid",
    "protective covering",
    "furnishing",
    "diapsid",
    "part",
    "relation",
    "article",
    "causal agent",
    "attribute",
    "artifact",
    "instrumentality",
    "organism",
    "living thing",
    "chordate",
    "vertebrate",
    "placental",
}


def read_nouns(wordnet: Path) -> dict[str, tuple[list[str], list[str]]]:
    """offset -> (lemmas, hypernym offsets) for every noun synset of WordNet's data.noun."""
    nouns: dict[str, tuple[list[str], list[str]]] = {}
    with (wordnet / "data.noun").open(encoding="utf-8") as lines:
        for line in lines:
            if line.startswith("  "):  # the licence header
                continue
            fields = line.split(" | ", 1)[0].split()
            offset, count = fields[0], int(fields[3], 16)
            lemmas = [fields[4 + 2 * i] for i in range(count)]
            at = 4 + 2 * count
            pointers = int(fields[at])
            parents = []
            for p in range(pointers):
                symbol, target, pos = fields[at + 1 + 4 * p : at + 4 + 4 * p]
                if symbol in ("@", "@i") and pos == "n":
                    parents.append(target)
            nouns[offset] = ([_name(lemma) for lemma in lemmas], parents)
    return nouns


def _name(lemma: str) -> str:
    return lemma.replace("_", " ").lower()


def ancestors(offset: str, nouns: dict[str, tuple[list[str], list[str]]]) -> list[str]:
    """Every hypernym of ``offset`` (all paths), nearest first."""
    seen: dict[str, None] = {}
    queue = deque(nouns[offset][1])
    while queue:
        parent = queue.popleft()
        if parent not in seen:
            seen[parent] = None
            queue.extend(nouns[parent][1])
    return list(seen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timm-wheel", type=Path, required=True)
    parser.add_argument("--wordnet", type=Path, default=WORDNET)
    parser.add_argument("--max-cover", type=int, default=400)
    parser.add_argument("--parent-names", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    with zipfile.ZipFile(args.timm_wheel) as wheel:
        wnids = wheel.read(SYNSETS_IN_WHEEL).decode().split()
    if len(wnids) != 1000 or wnids != sorted(wnids):
        raise SystemExit(f"{SYNSETS_IN_WHEEL}: expected the 1000 sorted ImageNet-1k ids")
    nouns = read_nouns(args.wordnet)
    chains = {wnid: ancestors(wnid[1:], nouns) for wnid in wnids}
    cover: dict[str, int] = {}
    for chain in chains.values():
        for parent in chain:
            cover[parent] = cover.get(parent, 0) + 1
    rows = []
    for index, wnid in enumerate(wnids):
        names = nouns[wnid[1:]][0]
        parents: list[str] = []
        for parent in chains[wnid]:
            lemmas = nouns[parent][0]
            if cover[parent] > args.max_cover or lemmas[0] in ABSTRACT:
                continue
            parents.extend(n for n in lemmas[: args.parent_names] if n not in names + parents)
        rows.append(f"{index}\t{wnid}\t{'|'.join(names)}\t{'|'.join(parents)}\n")
    header = (
        "# Generated by scripts/make_imagenet_tags.py from timm's imagenet_synsets.txt and "
        f"WordNet 3.0 (Debian wordnet-base); --max-cover {args.max_cover} "
        f"--parent-names {args.parent_names}\n"
    )
    args.out.write_text(header + "".join(rows), encoding="utf-8")
    print(f"wrote {args.out} ({len(rows)} classes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
