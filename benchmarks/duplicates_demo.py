"""The near-duplicate and variant pairs of the demo catalog, recomputed offline:
``python benchmarks/duplicates_demo.py [--cache-dir data/models] [--stamps DIR]``.

The demo indexes Debian's tuxpaint stamps (scripts/demo.sh); ``indexer duplicates`` then
lists the pairs its service verifies. This does the same without a service: every PNG
decoded as the worker decodes it (shrink-on-load for the model, worker/keypoints.py for the
keypoints), embedded, each item's candidates the 50 nearest with an embedding similarity of
the model's candidate floor or more (lookalike.duplicate_candidates.candidate_floor, the
similarity as lookalike.duplicate_candidates.candidate_query weighs it; exact copies, same
bytes, left out), each candidate pair verified once (lookalike.verify.verify, the pair taken
in one order whichever item asks) at the shipped threshold. Prints the counts, then every
near and variant pair (score, inliers) for a person to judge: docs/indexer.md reads the
list. ``--floors 0.55,0.6``: the same counts at other candidate floors too (the candidates
a floor passes are what a /duplicates call verifies: its cost), the pairs listed at the
shipped floor.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from lookalike import verify
from lookalike.duplicate_candidates import candidate_floor, candidate_query
from lookalike.images import DECODE_SCALED, ImageProblem, decode_as
from lookalike.settings import Settings
from worker.keypoints import find_keypoints, keypoint_source

MAX_PIXELS = 40_000_000
CANDIDATES = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--cache-dir", type=Path, default=Path("data/models"))
    parser.add_argument("--stamps", type=Path, default=Path("/usr/share/tuxpaint/stamps"))
    parser.add_argument(
        "--floors",
        type=lambda text: [float(f) for f in text.split(",")],
        default=[],
        help="other candidate floors to count at, e.g. 0.55,0.6",
    )
    args = parser.parse_args()

    from worker.model import load_embedder

    # The service's features, input size and pooling, as LOOKALIKE_* set them.
    settings = Settings.from_env()
    embedder = load_embedder(
        args.model,
        args.cache_dir,
        features=settings.features,
        input_size=settings.input_size,
        pooling=settings.pooling,
    )
    names, images, points, hashes = [], [], [], []
    for path in sorted(args.stamps.rglob("*.png")):
        data = path.read_bytes()
        try:
            image = decode_as(
                data, DECODE_SCALED, max_pixels=MAX_PIXELS, input_size=embedder.input_size
            )
        except ImageProblem as error:  # what the worker rejects, the demo does not index
            print(f"skipped {path}: {error}")
            continue
        names.append(str(path.relative_to(args.stamps)))
        images.append(image)
        points.append(find_keypoints(keypoint_source(data, image, max_pixels=MAX_PIXELS)))
        hashes.append(hashlib.sha256(data).hexdigest())
    vectors = np.asarray(embedder.embed(images))
    queries = [candidate_query(v, embedder.name) for v in vectors]
    similarity = np.stack([q.vector for q in queries]) @ vectors.T
    similarity *= np.array([q.scale for q in queries])[:, None]
    plain = sum(not p.verifiable for p in points)
    floor_now = candidate_floor(args.model, settings.pooling)
    floors = sorted({floor_now, *args.floors})
    # Each item's candidates at the lowest floor, nearest first: a higher floor's are the
    # first of them (a prefix, at most CANDIDATES), so every pair is verified once.
    ranked = [
        [
            int(j)
            for j in np.argsort(-similarity[i])
            if j != i and similarity[i, j] >= floors[0] and hashes[j] != hashes[i]
        ]
        for i in range(len(names))
    ]
    verdicts: dict[tuple[int, int], verify.Verdict] = {}
    shipped: dict[str, list[tuple[str, str, verify.Verdict]]] = {}
    for floor in reversed(floors):
        pairs: set[tuple[int, int]] = set()
        asked = 0  # what /duplicates calls verify when every item's duplicates are asked
        for i, candidates in enumerate(ranked):
            near = [j for j in candidates if similarity[i, j] >= floor][:CANDIDATES]
            asked += len(near) if points[i].verifiable else 0
            pairs.update((min(i, j), max(i, j)) for j in near)
        found: dict[str, list[tuple[str, str, verify.Verdict]]] = {"near": [], "variant": []}
        for i, j in sorted(pairs):
            if (i, j) not in verdicts:
                verdicts[i, j] = verify.verify(points[i], points[j])
            relation = verdicts[i, j].relation(settings.duplicate_threshold)
            if relation:
                found[relation].append((names[i], names[j], verdicts[i, j]))
        print(
            f"floor {floor}: {len(names)} stamps, {plain} too plain to verify, {len(pairs)} "
            f"candidate pairs ({asked / (len(names) - plain):.1f} candidates per verifiable "
            "item asked); "
            f"{len(found['near'])} near pairs, {len(found['variant'])} variant pairs "
            f"(threshold {settings.duplicate_threshold})"
        )
        if floor == floor_now:
            shipped = found
    for relation, rows in shipped.items():
        for a, b, v in rows:
            print(f"{relation}\t{a}\t{b}\tscore {v.score:.2f}\tinliers {v.inliers}")


if __name__ == "__main__":
    main()
