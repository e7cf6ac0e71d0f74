"""Where images come from: folders and manifests (fetching and crawling come later)."""

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
