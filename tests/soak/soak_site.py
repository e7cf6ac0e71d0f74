"""The soak's web shop: a local HTTP server with generated photos, some of them bad.

Photo ``n`` of a plan is ``/img/n.jpg`` with its own seed, so every image is distinct
(one item each). One in twenty is corrupt (a truncated JPEG, or bytes that are no
image at all); a few are slow (served after a delay), a few fail for good (500 every
time, or 404), a few fail once and then answer (a retry recovers them). What each
photo should become is known in advance: ``indexed`` or ``failed``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum

import images_factory
import numpy as np
from local_http import LocalServer, send

from indexer.images import content_id

PHOTO_SIZE = (96, 72)  # small: 2,000 of them embed in seconds on a CPU
SLOW_SECONDS = 2.0


class Kind(StrEnum):
    GOOD = "good"
    CORRUPT = "corrupt"  # truncated JPEG or not an image: rejected, with the reason
    SLOW = "slow"  # served after SLOW_SECONDS: still indexed
    FLAKY = "flaky"  # a 500 first, then the photo: the retry indexes it
    BROKEN = "broken"  # 500 every time: failed after the retries
    MISSING = "missing"  # 404: failed at once (permanent)


FAILING = (Kind.CORRUPT, Kind.BROKEN, Kind.MISSING)


def kind_of(n: int) -> Kind:
    """The fault plan: 1 in 20 corrupt; 1 in 100 slow; 1 in 200 flaky, broken, missing."""
    if n % 20 == 7:
        return Kind.CORRUPT
    if n % 100 == 13:
        return Kind.SLOW
    if n % 200 == 41:
        return Kind.FLAKY
    if n % 200 == 83:
        return Kind.BROKEN
    if n % 200 == 123:
        return Kind.MISSING
    return Kind.GOOD


def photo_bytes(seed: int) -> bytes:
    return images_factory.jpeg_bytes(seed=seed, size=PHOTO_SIZE)


def corrupt_bytes(seed: int) -> bytes:
    if seed % 2:
        return images_factory.truncated(photo_bytes(seed), keep=0.4)
    return np.random.default_rng(seed).bytes(2000)  # no image format at all


@dataclass(frozen=True)
class Photo:
    n: int
    url: str
    kind: Kind
    data: bytes  # what the server sends when it answers 200

    @property
    def item_id(self) -> str:
        """The id the catalog gives a photo that is taken in (sha256 of its bytes)."""
        return content_id(self.data)

    @property
    def expected(self) -> str:
        return "failed" if self.kind in FAILING else "indexed"


def _slow(body: bytes):
    def route(handler) -> None:
        time.sleep(SLOW_SECONDS)
        send(handler, 200, body, "image/jpeg")

    return route


def publish(server: LocalServer, count: int, seed_base: int, folder: str = "img",
            faults: bool = True) -> list[Photo]:  # fmt: skip
    """Serve ``count`` photos (seeds from ``seed_base``) under ``/folder/`` on ``server``,
    some bad ones among them (:func:`kind_of`) unless ``faults`` is false; their plan."""
    photos = []
    for n in range(count):
        kind = kind_of(n) if faults else Kind.GOOD
        path, seed = f"/{folder}/{n}.jpg", seed_base + n
        data = corrupt_bytes(seed) if kind == Kind.CORRUPT else photo_bytes(seed)
        if kind in (Kind.GOOD, Kind.CORRUPT):
            server.serve(path, data)
        elif kind == Kind.SLOW:
            server.route(path, _slow(data))
        elif kind == Kind.FLAKY:
            server.sequence(
                path,
                lambda h: send(h, 500, b"busy", "text/plain"),
                lambda h, data=data: send(h, 200, data, "image/jpeg"),
            )
        elif kind == Kind.BROKEN:
            server.serve(path, b"internal error", "text/plain", status=500)
        # MISSING: no route, the server answers 404
        photos.append(Photo(n, server.url(path), kind, data))
    return photos
