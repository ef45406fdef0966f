"""The worker's time bound on a decode: each catalog image and each search photo is decoded in
a child process that is killed when the decode runs past ``LOOKALIKE_DECODE_TIMEOUT_S``.

A decoder in C cannot be interrupted from Python, and a file can keep one busy for minutes
within the pixel bound (a JPEG with thousands of tiny progressive scans, docs/reliability.md);
a Celery time limit would end the whole batch with it. Here the one image fails alone, as
``decode_timeout``, and its batch-mates go on. The child is a new interpreter (a fork of a
process running TensorFlow's threads is unsafe), started once and kept for the next decodes;
one killed is replaced at the next decode. Each task thread borrows its own child, so decodes
run side by side as they did in-process. What it costs a normal photo (the bytes sent to the
child and the decoded, already-reduced picture sent back): docs/reliability.md.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from PIL import Image

from lookalike.images import ImageProblem, decode_as, decode_image, decode_with_larger

_ROOT = str(Path(__file__).resolve().parent.parent)
# Waiting for a child process to start (interpreter and Pillow imports), not counted in a
# decode's time bound.
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Decoded:
    image: Image.Image
    # CPU seconds the decode took in the child (the worker's "decode" stage metric).
    cpu_s: float
    # decode_with_larger's second picture (the keypoints'), when asked for and held.
    larger: Image.Image | None = None


# (kind, bytes, decode mode, max pixels, size, the larger picture's longer side)
Request = tuple[str, bytes, str, int, int, int]


def _decode(request: Request) -> tuple[Image.Image, Image.Image | None]:
    kind, data, mode, max_pixels, size, longer = request
    if kind == "draft":
        return decode_image(data, max_pixels=max_pixels, draft_size=size), None
    if kind == "larger":
        return decode_with_larger(data, mode, max_pixels=max_pixels, input_size=size, longer=longer)
    return decode_as(data, mode, max_pixels=max_pixels, input_size=size), None


def _shape(image: Image.Image | None, of: Image.Image) -> Any:
    """How the larger picture travels: not at all (None), as the model's one ("same"), or
    as (mode, size) followed by its pixels."""
    if image is None:
        return None
    return "same" if image is of else (image.mode, image.size)


def _serve(conn: Connection) -> None:
    """The child's loop: a request in; ("ok", mode, size, larger, cpu) then the pixels (and
    the larger picture's, when ``larger`` is a shape), or ("problem", code, message), out."""
    conn.send(("ready",))
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        started = time.process_time()
        try:
            image, larger = _decode(request)
        except ImageProblem as exc:
            conn.send(("problem", exc.code, exc.message))
            continue
        # The pixels as one raw message, not a pickled Image (fewer copies of a full decode).
        shape = _shape(larger, image)
        conn.send(("ok", image.mode, image.size, shape, time.process_time() - started))
        conn.send_bytes(image.tobytes())
        if isinstance(shape, tuple) and larger is not None:
            conn.send_bytes(larger.tobytes())


class _Child:
    """A decode process: ``python -m worker.decoding FD``, talking over a socket pair (not
    multiprocessing's ``spawn``, which imports the parent's ``__main__`` again: celery's or
    pytest's)."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, env.get("PYTHONPATH")]))
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "worker.decoding", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                env=env,
                stdin=subprocess.DEVNULL,
            )
        self.conn = Connection(ours.detach())
        if not self.conn.poll(START_TIMEOUT_S):
            self.kill()
            raise RuntimeError("the decode process did not start")
        self.conn.recv()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(5)
        self.conn.close()


class DecodeProcesses:
    """Decodes with a time bound; a pool of child processes, one per thread decoding at once."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._idle: list[_Child] = []
        self._lock = threading.Lock()
        self._closed = False

    def decode_as(self, data: bytes, mode: str, *, max_pixels: int, input_size: int) -> Decoded:
        """:func:`lookalike.images.decode_as`, bounded in time."""
        return self._run(("as", data, mode, max_pixels, input_size, 0))

    def decode_with_larger(
        self, data: bytes, mode: str, *, max_pixels: int, input_size: int, longer: int
    ) -> Decoded:
        """:func:`lookalike.images.decode_with_larger`, bounded in time."""
        return self._run(("larger", data, mode, max_pixels, input_size, longer))

    def decode_draft(self, data: bytes, *, max_pixels: int, draft_size: int) -> Decoded:
        """:func:`lookalike.images.decode_image` with a JPEG draft size, bounded in time."""
        return self._run(("draft", data, "", max_pixels, draft_size, 0))

    def _run(self, request: Request) -> Decoded:
        child = self._borrow()
        pixels = larger_pixels = b""
        try:
            child.conn.send(request)
            if not child.conn.poll(self.timeout_s):
                raise ImageProblem(
                    "decode_timeout",
                    f"decoding the image took longer than {self.timeout_s:g} s "
                    "(LOOKALIKE_DECODE_TIMEOUT_S); it was stopped",
                )
            answer: Any = child.conn.recv()
            if answer[0] == "ok":
                pixels = child.conn.recv_bytes()
                if isinstance(answer[3], tuple):
                    larger_pixels = child.conn.recv_bytes()
        except (EOFError, OSError) as exc:
            # The child died in the decoder (a crash in a C plugin): the file's fault, and
            # only this decode's.
            child.kill()
            raise ImageProblem(
                "corrupt_image", "the image could not be decoded: the decoder crashed"
            ) from exc
        except BaseException:
            child.kill()  # busy, or its pipe in an unknown state: never reused
            raise
        self._give_back(child)
        if answer[0] == "problem":
            raise ImageProblem(answer[1], answer[2])
        _, mode, size, shape, cpu_s = answer
        image = Image.frombytes(mode, size, pixels)
        larger = None
        if shape == "same":
            larger = image
        elif shape is not None:
            larger = Image.frombytes(shape[0], tuple(shape[1]), larger_pixels)
        return Decoded(image, cpu_s, larger)

    def _borrow(self) -> _Child:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        child = _Child()
        return child

    def _give_back(self, child: _Child) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(child)
                return
        child.kill()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for child in idle:
            child.kill()


if __name__ == "__main__":
    # A Ctrl-C in the terminal reaches the whole process group: the worker decides when this
    # process ends (it closes the socket, or kills it).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _serve(Connection(int(sys.argv[1])))
