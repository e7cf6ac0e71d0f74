"""indexer.sources.policy: a FetchPolicy from the settings."""

from __future__ import annotations

import pytest
from fetch_harness import LOOPBACK

from indexer.config import Settings
from indexer.sources.policy import FetchPolicy


def test_policy_from_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_FETCH_ALLOW_NETWORKS", '["127.0.0.0/8"]')
    settings = Settings(
        home=tmp_path,
        fetch_deadline=2.5,
        fetch_retries=1,
        fetch_respect_robots=False,
        max_image_bytes=12345,
        _env_file=None,
    )
    policy = FetchPolicy.from_settings(settings)
    assert policy.allow_networks == LOOPBACK
    assert (policy.deadline, policy.retries, policy.respect_robots) == (2.5, 1, False)
    assert policy.max_bytes == 12345  # fetch_max_bytes defaults to max_image_bytes
    settings = Settings(home=tmp_path, fetch_max_bytes=999, max_image_bytes=12345, _env_file=None)
    assert FetchPolicy.from_settings(settings).max_bytes == 999


def test_settings_refuse_a_bad_network():
    with pytest.raises(ValueError, match="CIDR"):
        Settings(fetch_allow_networks=["10.0.0.0/33"], _env_file=None)
