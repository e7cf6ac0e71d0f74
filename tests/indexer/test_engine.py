"""The public API end to end: folder → catalog → vectors → index → search, on the real model."""

from pathlib import Path

import images_factory
import numpy as np
import pytest
from PIL import Image

from indexer import jobs
from indexer.catalog import vector_id_for
from indexer.config import Settings
from indexer.engine import EMBED_CHUNK, Lookalike, NoIndexError
from indexer.index.errors import IndexLoadError
from indexer.search import ItemNotEmbedded, ItemQuery, UnknownItem


@pytest.fixture
def engine(tmp_path):
    with Lookalike.open(Settings(home=tmp_path / "home", batch_size=8)) as opened:
        yield opened


@pytest.fixture(scope="module")
def catalogue(sample_catalogue) -> Path:
    return sample_catalogue(products=5, shots=4, seed=3)


def shots(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.jpg"))


def test_a_folder_becomes_searchable_and_finds_its_own_product(engine, catalogue):
    state = engine.ingest(catalogue)  # stored, embedded and indexed, as one job
    assert (state.job.status, state.items["indexed"], state.failures) == ("done", 20, [])
    assert engine.embed().embedded == 0  # nothing left to embed
    assert engine.catalog.counts()["indexed"] == 20

    query = shots(catalogue)[5]
    hits = engine.search(query, k=4)
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert hits[0].item.source_url.endswith(query.name)
    by_item = engine.search(ItemQuery(hits[0].item.id), k=4)
    assert [hit.item.id for hit in by_item] == [hit.item.id for hit in hits]

    # Recall@1 over every item (its nearest other shot shows the same product); the
    # pretrained features reach 0.95+ on this sample, chance is 0.16.
    items = engine.catalog.items_with_status("indexed")
    nearest = [engine.search(item, k=2)[1].item for item in items]
    recall_at_1 = np.mean([a.label == b.label for a, b in zip(items, nearest, strict=True)])
    assert recall_at_1 >= 0.8


def test_one_corrupt_file_in_fifty_the_other_49_are_indexed(engine, tmp_path):
    folder = tmp_path / "photos" / "mugs"
    folder.mkdir(parents=True)
    for number in range(49):
        (folder / f"mug-{number:02d}.jpg").write_bytes(images_factory.jpeg_bytes(seed=number))
    (folder / "mug-49.jpg").write_bytes(images_factory.truncated_jpeg_bytes())

    state = engine.ingest(folder.parent)
    assert state.fetches == {"pending": 0, "done": 49, "failed": 1}
    assert [(Path(location).name, reason) for location, reason in state.failures] == [
        ("mug-49.jpg", state.failures[0][1])
    ]
    assert "truncated" in state.failures[0][1]
    counts = engine.catalog.counts()
    assert counts["indexed"] == 49 and counts["failed"] == 1
    assert engine.catalog.failures()[0].error == state.failures[0][1]


def test_update_index_adds_new_items_without_a_rebuild(engine, catalogue, tmp_path):
    engine.ingest(catalogue)
    first = engine.build_index()

    extra = tmp_path / "extra" / "new-product"
    extra.mkdir(parents=True)
    new_image = extra / "new.png"
    new_image.write_bytes(images_factory.png_bytes(seed=99, size=(120, 90)))
    engine.ingest(extra.parent)  # its index stage: engine.update_index()
    second = engine.indexes.current_version()
    assert engine.update_index() == second  # nothing embedded is left out

    assert second != first
    manifest = engine.indexes.manifest(second)
    assert manifest.parent == first and manifest.total == 21
    assert engine.search(new_image, k=1)[0].item.label == "new-product"
    assert engine.catalog.counts()["indexed"] == 21


def test_deleted_items_leave_catalog_vectors_and_index(engine, catalogue):
    engine.ingest(catalogue)
    engine.embed()
    engine.build_index()
    query = shots(catalogue)[0]
    doomed = engine.search(query, k=1)[0].item

    assert engine.delete(doomed.id)
    assert engine.catalog.get(doomed.id) is None
    assert vector_id_for(doomed.id) not in engine.vectors.load()[0]
    assert doomed.id not in {hit.item.id for hit in engine.search(query, k=20)}
    assert vector_id_for(doomed.id) not in raw_ids(engine, query)
    assert not engine.delete(doomed.id)


def raw_ids(engine, query) -> set[int]:
    """The vector ids the index itself returns for ``query``, before the catalog join."""
    vector = engine.embedder.embed_images([Image.open(query).convert("RGB")])
    searcher = engine.searcher()
    _, found = searcher.search(vector, searcher.index.ntotal)
    return {int(v) for v in found.ravel() if v >= 0}


def test_a_marked_delete_leaves_every_search_at_once_and_the_index_with_the_writer(
    engine, catalogue
):
    engine.ingest(catalogue)
    query = shots(catalogue)[0]
    doomed = engine.search(query, k=1)[0].item
    assert engine.mark_deleted([doomed.id]) == 1  # what the API does
    assert doomed.id not in {hit.item.id for hit in engine.search(query, k=20)}
    with pytest.raises(UnknownItem):
        engine.search(ItemQuery(doomed.id))
    assert vector_id_for(doomed.id) in raw_ids(engine, query)  # the writer has not run yet
    assert jobs.apply_deletions(engine) == 1  # the index queue's task
    assert vector_id_for(doomed.id) not in raw_ids(engine, query)
    assert engine.catalog.get(doomed.id) is None and jobs.apply_deletions(engine) == 0


def test_interrupted_embedding_resumes_to_the_same_vectors(tmp_path, catalogue, monkeypatch):
    """Resume equals a clean run: crash after the first chunk, run again, compare."""
    monkeypatch.setattr("indexer.engine.EMBED_CHUNK", 6)
    assert EMBED_CHUNK > 6  # the real chunk is larger; the test shrinks it

    with Lookalike.open(Settings(home=tmp_path / "clean", batch_size=4)) as clean:
        clean.ingest(catalogue)
        clean.embed()
        clean_ids, clean_vectors = clean.vectors.load()

    with Lookalike.open(Settings(home=tmp_path / "crashed", batch_size=4)) as crashed:
        calls = {"n": 0}
        original = crashed.embedder.embed_paths

        def dies_in_the_second_chunk(paths, progress=False):
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt("killed")
            yield from original(paths, progress=progress)

        monkeypatch.setattr(crashed.embedder, "embed_paths", dies_in_the_second_chunk)
        with pytest.raises(KeyboardInterrupt):
            crashed.ingest(catalogue)  # stores all 20, dies embedding the second chunk
        assert crashed.catalog.counts()["stored"] == 14
        assert crashed.catalog.counts()["embedded"] == 6  # the first chunk is kept
        monkeypatch.setattr(crashed.embedder, "embed_paths", original)
        assert crashed.embed().embedded == 14  # only the rest is redone
        ids, vectors = crashed.vectors.load()

    order, clean_order = np.argsort(ids), np.argsort(clean_ids)
    np.testing.assert_array_equal(ids[order], clean_ids[clean_order])
    np.testing.assert_allclose(vectors[order], clean_vectors[clean_order], atol=1e-5)


def test_a_tampered_new_version_is_refused_and_the_old_one_keeps_serving(engine, catalogue):
    engine.ingest(catalogue)
    engine.embed()
    good = engine.build_index()
    query = shots(catalogue)[0]
    before = [hit.item.id for hit in engine.search(query, k=5)]

    bad = engine.build_index(shards=2)
    shard = engine.settings.index_dir / bad / "shard-01.faiss"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))

    assert engine.indexes.current_version() == bad
    assert [hit.item.id for hit in engine.search(query, k=5)] == before
    assert engine.searcher().version == good
    with pytest.raises(IndexLoadError, match="shard-01"):
        Lookalike.open(engine.settings).searcher()


def test_searching_before_any_index_says_what_to_do(engine, catalogue):
    with pytest.raises(NoIndexError, match="index build"):
        engine.search(shots(catalogue)[0])
    with pytest.raises(NoIndexError, match="ingest and embed"):
        engine.build_index()


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, catalogue):
    """20 shots of 5 products (label = product = folder), embedded and indexed."""
    home = tmp_path_factory.mktemp("indexed")
    with Lookalike.open(Settings(home=home, batch_size=8)) as opened:
        opened.ingest(catalogue)
        opened.embed()
        opened.build_index(shards=2)
        yield opened


def test_every_query_kind_finds_the_same_neighbours(indexed, catalogue):
    from PIL import Image

    path = shots(catalogue)[5]
    by_path = indexed.search(path, k=5)
    item = by_path[0].item
    vector = indexed.item_vector(item.id)
    same = [
        indexed.search(str(path), k=5),  # a str is a path, never an item id
        indexed.search(path.read_bytes(), k=5),
        indexed.search(Image.open(path), k=5),
        indexed.search(ItemQuery(item.id), k=5),
        indexed.search(item, k=5),
        indexed.search(vector, k=5),
        indexed.search(vector[0], k=5),
    ]
    expected = [hit.item.id for hit in by_path]
    for result in same:
        assert [hit.item.id for hit in result] == expected
    assert by_path.complete and len(by_path) == 5
    assert by_path.index_version == indexed.indexes.current_version()
    assert by_path.model_version == indexed.model.version


def test_filters_and_grouping(indexed, catalogue):
    query = shots(catalogue)[0]
    other = sorted({item.label for item in indexed.catalog.items_with_status("indexed")})[-1]
    labelled = indexed.search(query, k=4, label=other)
    assert len(labelled) == 4 and {hit.item.label for hit in labelled} == {other}
    product = indexed.search(query, k=10, product_id=other)
    assert {hit.item.product_id for hit in product} == {other}
    assert len(product) == 4 and not product.complete  # the product has 4 shots
    assert product.depth == 4  # the search was restricted to the product's own vectors

    grouped = indexed.search(query, k=5, group_by_product=True)
    assert len({hit.item.product_id for hit in grouped}) == len(grouped) == 5
    plain = indexed.search(query, k=5)
    assert plain.depth == 5
    assert grouped[0].item.id == plain[0].item.id  # the best hit leads either way

    scores = [hit.score for hit in indexed.search(query, k=20)]
    floor = scores[7]
    above = indexed.search(query, k=20, min_score=floor)
    assert [hit.score for hit in above] == [s for s in scores if s >= floor]


def test_a_label_held_by_one_item_finds_it_however_unlike_the_query(indexed, catalogue):
    """Label and product filters restrict the index search itself (the catalogue's ids
    for them), not the neighbours found: the one match comes back even when every
    other vector is closer to the query."""
    from indexer.catalog.schema import items_table

    query = shots(catalogue)[0]
    least_like = indexed.search(query, k=20)[-1].item

    def relabel(label):
        with indexed.catalog.engine.begin() as conn:
            conn.execute(items_table.update().where(items_table.c.id == least_like.id)
                         .values(label=label))

    relabel("one of a kind")
    try:
        found = indexed.search(query, k=5, label="one of a kind")
        assert [hit.item.id for hit in found] == [least_like.id] and not found.complete
        assert found.depth == 1
        both = indexed.search(query, k=5, label="one of a kind",
                              product_id=least_like.product_id)
        assert [hit.item.id for hit in both] == [least_like.id]
        assert len(indexed.search(query, k=5, label="one of a kind", product_id="nope")) == 0
        assert len(indexed.search(query, k=5, label="no such label")) == 0
    finally:  # the engine is the module's
        relabel(least_like.label)


def test_one_rule_for_k_and_errors_for_items_without_vectors(indexed, catalogue):
    largest = indexed.settings.api_search_max_k
    assert len(indexed.search(shots(catalogue)[0], k=largest)) == 20  # all there is
    for bad in (0, largest + 1, 2.5, True, "3"):
        with pytest.raises(ValueError, match=f"k must be an integer from 1 to {largest}"):
            indexed.search(shots(catalogue)[0], k=bad)
    for bad in (1.5, -2, float("nan"), "0.5"):
        with pytest.raises(ValueError, match="min_score must be a number from -1 to 1"):
            indexed.search(shots(catalogue)[0], min_score=bad)
    with pytest.raises(UnknownItem, match="no item 00"):
        indexed.search(ItemQuery("00" * 32))
    with pytest.raises(ValueError, match=r"\[dim\] or \[1, dim\]"):
        indexed.search(np.zeros((2, indexed.model.dim), dtype=np.float32))


def test_an_item_without_a_vector_yet_is_a_conflict_not_a_miss(engine, catalogue):
    engine.ingest(catalogue)  # stored, embedded and indexed
    waiting, _ = engine.catalog.add_item("f" * 64, stored_path="images/ff/waiting.jpg")
    with pytest.raises(ItemNotEmbedded, match="has no vector yet"):
        engine.search(ItemQuery(waiting.id))
