"""The near-duplicate and variant pairs of the demo catalog, recomputed offline:
``python benchmarks/duplicates_demo.py [--cache-dir data/models] [--stamps DIR]``.

The demo indexes Debian's tuxpaint stamps (scripts/demo.sh); ``indexer duplicates`` then
lists the pairs its service verifies. This does the same without a service: every PNG
decoded as the worker decodes it (shrink-on-load for the model, worker/keypoints.py for the
keypoints), embedded, each item's candidates the 50 nearest with an embedding similarity of
lookalike.verify.CANDIDATE_FLOOR or more (as lookalike.duplicate_candidates.candidate_query
weighs it; exact copies, same bytes, left out), each candidate pair verified once
(lookalike.verify.verify, the pair taken in one order whichever item asks) at the shipped
threshold. Prints the counts, then every near and variant pair (score, inliers) for a person
to judge: docs/indexer.md reads the list.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from lookalike import verify
from lookalike.duplicate_candidates import candidate_query
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
    pairs: set[tuple[int, int]] = set()
    for i in range(len(names)):
        near = [
            int(j)
            for j in np.argsort(-similarity[i])
            if j != i and similarity[i, j] >= verify.CANDIDATE_FLOOR and hashes[j] != hashes[i]
        ][:CANDIDATES]
        pairs.update((min(i, j), max(i, j)) for j in near)
    found: dict[str, list[tuple[str, str, verify.Verdict]]] = {"near": [], "variant": []}
    for i, j in sorted(pairs):
        verdict = verify.verify(points[i], points[j])
        relation = verdict.relation(settings.duplicate_threshold)
        if relation:
            found[relation].append((names[i], names[j], verdict))
    plain = sum(not p.verifiable for p in points)
    print(
        f"{len(names)} stamps, {plain} too plain to verify, {len(pairs)} candidate pairs; "
        f"{len(found['near'])} near pairs, {len(found['variant'])} variant pairs "
        f"(threshold {settings.duplicate_threshold})"
    )
    for relation, rows in found.items():
        for a, b, v in rows:
            print(f"{relation}\t{a}\t{b}\tscore {v.score:.2f}\tinliers {v.inliers}")


if __name__ == "__main__":
    main()
