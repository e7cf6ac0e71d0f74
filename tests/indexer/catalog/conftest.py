"""A catalog on every backend for the catalog package's tests."""

import pytest

from indexer.catalog import Catalog


@pytest.fixture
def catalog(catalog_url):
    cat = Catalog.open(catalog_url)
    yield cat
    cat.close()
