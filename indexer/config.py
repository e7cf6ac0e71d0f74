"""Settings: read once from ``LOOKALIKE_*`` environment variables and an optional ``.env``.

Every other module takes a :class:`Settings` (or the values it needs) as an argument;
nothing else reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024


class Settings(BaseSettings):
    """Typed settings. ``Settings(home=tmp_path)`` in tests; ``load_settings()`` elsewhere."""

    model_config = SettingsConfigDict(
        env_prefix="LOOKALIKE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    home: Path = Field(Path("lookalike-data"), description="data directory")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the catalog; default: SQLite file in home"
    )

    # Image intake: checked before and while decoding (see indexer.images).
    max_image_bytes: int = Field(25 * MiB, gt=0)
    max_image_pixels: int = Field(40_000_000, gt=0)
    thumbnail_size: int = Field(256, ge=16, le=2048)

    # Model and embedding.
    model: str | None = Field(
        None,
        description="'pretrained' or the name/path of a trained model directory; "
        "unset: the model chosen with `lookalike models use`, else 'pretrained'",
    )
    backbone: str = "tf_efficientnet_lite0"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    batch_size: int = Field(32, ge=1, le=4096)
    loader_workers: int = Field(-1, ge=-1, description="-1: chosen from the CPU count")

    # Index.
    shards: int = Field(1, ge=1, le=256)
    index_factory: str = Field("auto", description="'auto' or a faiss factory string")
    flat_threshold: int = Field(
        50_000, ge=1, description="a shard with fewer vectors gets an exact Flat index"
    )
    pq_threshold: int = Field(
        2_000_000, ge=1, description="a shard with more vectors gets IVF-PQ instead of IVF-Flat"
    )
    search_threads: int = Field(0, ge=0, description="0: one per shard, capped at CPU count")

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def catalog_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'catalog.sqlite3'}"

    @property
    def images_dir(self) -> Path:
        return self.home / "images"

    @property
    def thumbnails_dir(self) -> Path:
        return self.home / "thumbnails"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def vectors_dir(self) -> Path:
        return self.home / "vectors"

    @property
    def index_dir(self) -> Path:
        return self.home / "index"


def load_settings(**overrides) -> Settings:
    """Settings from the environment and ``.env``, with explicit overrides on top."""
    return Settings(**overrides)
