"""Where images come from: folders and manifests; web sites through their own modules.

Fetching (:mod:`indexer.sources.fetch`) and crawling (:mod:`indexer.sources.crawl`)
are imported from there: they pull in the HTTP stack, which folder and manifest
readers do not need.
"""

from indexer.sources.folder import IMAGE_EXTENSIONS, iter_folder
from indexer.sources.manifest import (
    MANIFEST_EXTENSIONS,
    ManifestError,
    is_manifest,
    iter_manifest,
    read_manifest,
)
from indexer.sources.records import SourceRecord

__all__ = [
    "IMAGE_EXTENSIONS",
    "MANIFEST_EXTENSIONS",
    "ManifestError",
    "SourceRecord",
    "is_manifest",
    "iter_folder",
    "iter_manifest",
    "read_manifest",
]
