"""Settings: read once from ``LOOKALIKE_*`` environment variables and an optional ``.env``.

Every other module takes a :class:`Settings` (or the values it needs) as an argument;
nothing else reads the environment. A bad value is refused by :func:`load_settings`
with :class:`InvalidSettings`: one line naming each variable and its rule, never the
value (it may be a secret). Secrets stay out of messages, logs and ``repr``: the API
key is a ``SecretStr``, and the password of a URL setting is shown as ``***``
(:func:`redact_url`).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

MiB = 1024 * 1024
# The largest k any search may ask (and the deepest it looks when it over-fetches for
# filters): the ceiling of LOOKALIKE_API_SEARCH_MAX_K, which decides the k allowed.
MAX_K = 1024
MIN_API_KEY_LENGTH = 16
# Inference runtimes (indexer.model.runtime); auto: the fastest measured on the machine.
RuntimeName = Literal["auto", "openvino", "onnxruntime", "torch"]
RUNTIMES: tuple[str, ...] = ("auto", "openvino", "onnxruntime", "torch")
URL_SETTINGS = ("database_url", "broker_url", "result_backend", "redis_url")


class InvalidSettings(ValueError):
    """Settings that break a rule; the message is one line and carries no value."""


class Settings(BaseSettings):
    """Typed settings. ``Settings(home=tmp_path)`` in tests; ``load_settings()`` elsewhere."""

    model_config = SettingsConfigDict(
        env_prefix="LOOKALIKE_", env_file=".env", env_file_encoding="utf-8", extra="ignore",
        hide_input_in_errors=True,  # a refused value may be a secret
    )  # fmt: skip

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
    runtime: RuntimeName = Field(
        "auto", description="inference runtime; auto: the fastest measured here"
    )
    batch_size: int | None = Field(
        None, ge=1, le=4096, description="embedding batch; unset: measured for the runtime"
    )
    cache_dir: Path | None = Field(
        None, description="exported graphs of the pretrained model and runtime measurements; "
        "default: home/cache"
    )
    loader_workers: int = Field(-1, ge=-1, description="-1: chosen from the CPU count")

    # Index.
    shards: int = Field(1, ge=1, le=256)
    index_factory: str = Field("auto", description="'auto' or a faiss factory string")
    flat_threshold: int = Field(
        50_000, ge=1, description="a shard with fewer vectors gets an exact Flat index"
    )
    pq_threshold: int = Field(
        2_000_000, ge=1, description="a shard with more vectors gets IVF-PQ codes, not half floats"
    )
    index_dim: int = Field(
        256, ge=0, le=4096,
        description="IVF indexes hold vectors projected to this many principal components "
        "(fitted on the indexed vectors); 0: the model's full dimension",
    )
    hnsw_nlist: int = Field(
        16_384, ge=1,
        description="IVF indexes with at least this many lists assign vectors to lists with "
        "an HNSW graph over the centroids (IVF…_HNSW32), not by comparing with each centroid",
    )
    search_threads: int = Field(0, ge=0, description="0: one per shard, capped at CPU count")

    # Fetching images over HTTP(S) (indexer.sources.fetch). Private, loopback and
    # other internal addresses are refused unless a network here allows them.
    fetch_allow_networks: list[str] = Field(
        default_factory=list,
        description='CIDRs that may be fetched although internal, e.g. ["127.0.0.0/8"]',
    )
    fetch_connect_timeout: float = Field(5.0, gt=0, description="seconds to open a connection")
    fetch_read_timeout: float = Field(15.0, gt=0, description="seconds one read may wait")
    fetch_deadline: float = Field(30.0, gt=0, description="seconds for one whole download")
    fetch_max_bytes: int | None = Field(None, gt=0, description="default: max_image_bytes")
    fetch_user_agent: str = "LookalikeBot/0.1"
    fetch_per_host_interval: float = Field(
        1.0, ge=0, description="seconds between two requests to one host, shared by workers"
    )
    fetch_retries: int = Field(3, ge=0, le=10, description="retries of transient failures")
    fetch_backoff: float = Field(0.5, ge=0, description="first retry delay; doubles each time")
    fetch_max_backoff: float = Field(
        30.0, ge=0, description="longest retry delay, Retry-After included"
    )
    fetch_max_redirects: int = Field(5, ge=0, le=20)
    fetch_respect_robots: bool = True
    fetch_robots_ttl: float = Field(3600.0, gt=0, description="seconds robots.txt is cached")
    redis_url: str | None = Field(
        None, description="redis://… shared by workers (per-host rate limit); unset: in-process"
    )

    @field_validator("fetch_allow_networks")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        networks = []
        for cidr in value:
            try:
                networks.append(str(ipaddress.ip_network(cidr.strip(), strict=False)))
            except ValueError:
                raise ValueError(f"not a network in CIDR notation: {cidr!r}") from None
        return networks

    @field_validator("home", "api_metrics_dir")
    @classmethod
    def _absolute_path(cls, value: Path | None) -> Path | None:
        return value.expanduser().resolve() if value is not None else None

    @field_validator("api_key")
    @classmethod
    def _long_api_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_API_KEY_LENGTH:
            raise ValueError(f"must be at least {MIN_API_KEY_LENGTH} characters")
        return value

    def __repr_args__(self):
        # repr (and so any log line or traceback showing settings) masks URL passwords
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name in URL_SETTINGS else value

    # -- Background workers (workers/, indexer.jobs) ---------------------------------
    # Celery: Redis when broker_url is set, else an embedded transport (files under
    # home/broker) that needs no server. Intervals are seconds; 0 switches a schedule off.
    broker_url: str | None = Field(
        None, description="redis://host:6379/0; unset: embedded filesystem transport in home"
    )
    result_backend: str | None = Field(
        None, description="unset: the broker's Redis, or result files under home/celery-results"
    )
    broker_key_prefix: str = Field(
        "lookalike:", description="prefix of the workers' Redis keys (queues, results, locks)"
    )
    queue_ingest: str = Field("ingest", min_length=1, description="fetch and store (I/O bound)")
    queue_embed: str = Field("embed", min_length=1, description="embedding (one per GPU)")
    queue_index: str = Field("index", min_length=1, description="the index writer (one consumer)")
    broker_visibility_timeout: float = Field(
        4 * 3600.0, gt=0, description="seconds before Redis redelivers an unacknowledged task"
    )
    broker_restore_interval: float = Field(
        10.0, gt=0, description="seconds between a worker's scans for abandoned Redis tasks"
    )
    task_soft_time_limit: float = Field(
        1500.0, gt=0, description="seconds before a task is asked to stop"
    )
    task_time_limit: float = Field(1800.0, gt=0, description="seconds before a task is killed")
    reindex_time_limit: float = Field(
        3 * 3600.0, gt=0, description="seconds a full re-index may run (re-embedding included)"
    )
    ingest_chunk_size: int = Field(
        64, ge=1, le=10_000, description="images per fetch task, and per embed task"
    )
    ingest_threads: int = Field(
        4, ge=1, le=64, description="download threads of an in-process (--inline) ingest"
    )
    recrawl_interval: float = Field(
        86400.0, ge=0, description="beat: re-read every registered source this often; 0: off"
    )
    reindex_interval: float = Field(
        86400.0, ge=0, description="beat: full re-index this often; 0: off"
    )
    sweep_interval: float = Field(
        60.0, ge=0, description="beat: look for stalled jobs this often; 0: off"
    )
    stalled_after: float = Field(
        600.0, gt=0, description="a job without progress this long has its work queued again"
    )
    index_keep_versions: int = Field(
        3, ge=2, description="index versions kept by a re-index (current + rollback targets)"
    )
    reindex_lock_ttl: float = Field(
        60.0, gt=0, description="seconds the Redis re-index lock lives unless renewed"
    )
    crawl_max_depth: int = Field(2, ge=0, le=20, description="clicks from the start page")
    crawl_max_pages: int = Field(500, ge=1, description="pages one crawl reads at most")
    crawl_sitemaps_from_robots: bool = Field(
        True, description="also start from the sitemaps robots.txt lists"
    )

    @model_validator(mode="after")
    def _limits_below_visibility(self) -> Settings:
        limits = {
            "task_time_limit": self.task_time_limit,
            "reindex_time_limit": self.reindex_time_limit,
        }
        for name, value in limits.items():
            if value >= self.broker_visibility_timeout:
                raise ValueError(
                    f"{name} ({value:g} s) must be below broker_visibility_timeout "
                    f"({self.broker_visibility_timeout:g} s), or Redis hands a running "
                    "task to a second worker"
                )
        if self.task_soft_time_limit >= self.task_time_limit:
            raise ValueError(
                f"task_soft_time_limit ({self.task_soft_time_limit:g} s) must be below "
                f"task_time_limit ({self.task_time_limit:g} s)"
            )
        queues = [self.queue_ingest, self.queue_embed, self.queue_index]
        if len(set(queues)) != 3:
            raise ValueError(f"queue names must differ, got {queues}")
        return self

    @property
    def broker_is_redis(self) -> bool:
        return (self.broker_url or "").startswith(("redis://", "rediss://", "unix://"))

    @property
    def lock_redis_url(self) -> str | None:
        """The Redis that workers on several machines share for locks, if any."""
        return self.redis_url or (self.broker_url if self.broker_is_redis else None)

    @property
    def broker_dir(self) -> Path:
        return self.home / "broker"

    # -- end of background workers ------------------------------------------------

    # -- HTTP search API (search_api/) ---------------------------------------------
    # Writes (uploads, sources, deletes, reindex) need ``Authorization: Bearer <api_key>``;
    # with no key configured every write is refused. Reads are open unless
    # api_read_key_required is set.
    api_key: SecretStr | None = Field(
        None, description=f"bearer key for writes, at least {MIN_API_KEY_LENGTH} characters"
    )
    api_read_key_required: bool = Field(False, description="reads need the key too")
    api_max_upload_bytes: int = Field(
        64 * MiB, gt=0, description="largest request body the API reads (MAX_CONTENT_LENGTH)"
    )
    api_max_form_memory_bytes: int = Field(
        512 * 1024, gt=0, description="largest non-file form field held in memory"
    )
    api_max_form_parts: int = Field(1000, ge=1, description="most parts in one multipart body")
    api_search_max_k: int = Field(
        100, ge=1, le=MAX_K, description="largest k a search may ask (API, CLI and Python)"
    )
    api_ready_retry_after: int = Field(
        10, ge=1,
        description="seconds a 503 asks clients to wait (/readyz, a search before the index "
        "loads, an upload or source while the broker is down)",
    )
    api_preload: bool = Field(True, description="load the model and index when the app starts")
    api_bind: str = Field("127.0.0.1:8000", description="gunicorn's address (host:port)")
    api_workers: int = Field(2, ge=1, le=64, description="gunicorn worker processes")
    api_threads: int = Field(4, ge=1, le=64, description="request threads per worker process")
    api_head_timeout: float = Field(
        10.0, gt=0, le=3600, description="seconds a connection has to send a request's line "
        "and headers once its thread took it; then gunicorn closes it (slow clients)",
    )  # fmt: skip
    api_metrics_dir: Path | None = Field(
        None, description="the gunicorn workers' metric files (prometheus_client multiprocess), "
        "emptied when the server starts; default: home/run/metrics/<host>_<bind>"
    )

    def api_metrics_dir_for(self, bind: str) -> Path:
        """Where the server bound to ``bind`` keeps its workers' metric files.

        One directory per server by default: API machines may share the data directory,
        and each server empties its own at start and sums only its own workers.
        """
        if self.api_metrics_dir is not None:
            return self.api_metrics_dir
        server = re.sub(r"[^\w.-]+", "_", f"{socket.gethostname()}_{bind}")
        return self.home / "run" / "metrics" / server

    # -- end of HTTP search API ----------------------------------------------------

    # -- Catalogue maps (indexer.maps): t-SNE of a sample of an index version --------
    map_max_points: int = Field(
        5000, ge=1, le=1_000_000, description="vectors sampled for a map (uniform, seeded)"
    )
    map_clusters: int = Field(
        0, ge=0, le=1000, description="k-means clusters of a map; 0: about sqrt(points/2)"
    )
    map_perplexity: float = Field(
        30.0, gt=0, le=500, description="t-SNE perplexity (lowered for small samples)"
    )
    map_seed: int = Field(0, ge=0, description="seed of the sample, t-SNE and k-means")
    map_requeue_after: float = Field(
        600.0, gt=0, description="seconds before the API may queue a pending map again"
    )
    # -- end of catalogue maps --------------------------------------------------------

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
    def runtime_cache_dir(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else self.home / "cache"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def evaluations_dir(self) -> Path:
        """Where `lookalike evaluate` saves its metrics (`models list` shows them)."""
        return self.home / "evaluations"

    @property
    def vectors_dir(self) -> Path:
        return self.home / "vectors"

    @property
    def index_dir(self) -> Path:
        return self.home / "index"


def load_settings(**overrides) -> Settings:
    """Settings from the environment and ``.env``, with explicit overrides on top.

    Raises :class:`InvalidSettings` (one line, naming the variables, no values).
    """
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise InvalidSettings(describe_errors(error)) from None
    except SourceError as error:  # a list or JSON value that does not parse
        field = re.search(r'field "(\w+)"', str(error))
        variable = f"LOOKALIKE_{field.group(1).upper()}" if field else "a setting"
        raise InvalidSettings(f"invalid settings: {variable}: not valid JSON") from None


def describe_errors(error: ValidationError) -> str:
    """``LOOKALIKE_API_KEY: must be at least 16 characters; ...``: variables and rules only."""
    problems = []
    for detail in error.errors(include_url=False, include_input=False, include_context=False):
        message = detail["msg"].removeprefix("Value error, ")
        loc = [str(part) for part in detail["loc"]]
        if not loc:  # a rule over several settings names them itself
            problems.append(message)
            continue
        variable = f"LOOKALIKE_{loc[0].upper()}" + "".join(f"[{part}]" for part in loc[1:])
        problems.append(f"{variable}: {message}")
    return "invalid settings: " + "; ".join(problems).replace("\n", " ")


def redact_url(url: Any) -> Any:
    """``url`` with its password shown as ``***`` (``redis://:***@host/0``); others unchanged."""
    if not isinstance(url, str) or "@" not in url:
        return url
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL we can take apart: show none of it
        return "***"
    if not password:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
