"""The index layer's exceptions, so callers can tell a bad request from a broken index.

``FactoryError`` is a ``ValueError`` (the caller asked for something invalid);
``IndexLoadError`` means files on disk are missing, damaged or do not match what
the caller expects, and the index must not be served.
"""

from __future__ import annotations


class IndexStoreError(Exception):
    """Base class of every error raised by :mod:`indexer.index`."""


class FactoryError(IndexStoreError, ValueError):
    """An index factory string is unknown, invalid or unsupported by the store."""


class IndexBuildError(IndexStoreError):
    """Building or updating an index failed (e.g. too few vectors to train IVF)."""


class IndexDiskFullError(IndexBuildError):
    """The file system holding the index ran out of space (or quota) while a version
    was written; the half-written version was removed and ``CURRENT`` did not move."""


class IndexLoadError(IndexStoreError):
    """An index version cannot be served: missing, truncated, tampered or mismatched."""


class IndexNotFoundError(IndexLoadError):
    """There is no such version, or no version is current yet."""


class IndexLockedError(IndexStoreError):
    """Another writer holds the index lock and the wait timed out."""


class NothingToRollBack(IndexStoreError):
    """No earlier activated version exists that still verifies (and fits the model)."""


class ReindexRunning(IndexStoreError):
    """Another process holds the re-index lock; this re-index must not start.

    Deliberately not an :class:`IndexLockedError`: a caller should give up (a re-index
    is already doing the work), not retry the way it would after a writer-lock timeout.
    """
