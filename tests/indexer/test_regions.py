"""Region queries: boxes read and refused in one place, crops in displayed pixels, and the
engine embedding exactly the crop (of an upload, or of an item's stored original)."""


import images_factory
import numpy as np
import pytest
from PIL import Image
from training_factory import write_tiny_model

from indexer.config import Settings
from indexer.engine import Lookalike
from indexer.images import load_image
from indexer.regions import BOX_PATTERN, BadBox, Box, crop
from indexer.search import ItemQuery, UnknownItem


@pytest.mark.parametrize(
    "value",
    ["10,20,110,220", " 10 , 20,110 ,220 ", "10.0,20,110.0,220", [10, 20, 110, 220],
     (10.0, 20.0, 110.0, 220.0), np.array([10, 20, 110, 220])],
)  # fmt: skip
def test_a_box_reads_from_text_or_four_numbers(value):
    assert Box.of(value) == Box(10, 20, 110, 220)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1,2,3", 'box must be 4 numbers "x0,y0,x1,y1" in pixels, got \'1,2,3\''),
        ("1,2,3,4,5", "box must be 4 numbers"),
        ("a,b,c,d", "box must be 4 numbers"),
        ("1e3,0,2e3,40", "box must be 4 numbers"),
        ("", "box must be 4 numbers"),
        ([1, 2, 3], r"box must be 4 numbers \[x0, y0, x1, y1\] in pixels, got \[1, 2, 3\]"),
        ([0, 0, True, 20], "box must be 4 numbers"),
        ([0, 0, float("inf"), 20], "box must be 4 numbers"),
        ([0, 0, "20", 20], "box must be 4 numbers"),
        ({"x0": 0}, "box must be 4 numbers"),
        (None, "box must be 4 numbers"),
        ("50,10,20,60", r"box \(50, 10, 20, 60\) is inverted: x1 must be greater than x0"),
        ("0,60,40,10", "is inverted"),
        ("0,0,40,0", "is inverted"),
        ("0,0,15.5,40", r"box \(0, 0, 15.5, 40\) is 15.5x40 pixels, smaller than the 16x16"),
        ("5,5,100,20", "is 95x15 pixels, smaller than the 16x16 minimum"),
    ],
)  # fmt: skip
def test_a_bad_box_says_what_is_wrong(value, message):
    with pytest.raises(BadBox, match=message):
        Box.of(value)
    assert issubclass(BadBox, ValueError)


def test_the_pattern_in_the_api_document_is_the_parsers():
    import re

    for good in ("0,0,16,16", "1.5, 2 ,30,40", "-1,0,20,20"):
        assert re.search(BOX_PATTERN, good)
    for bad in ("1,2,3", "1;2;3;4", "0x10,0,20,20", "1e3,0,2e3,40"):
        assert not re.search(BOX_PATTERN, bad)
        with pytest.raises(BadBox):
            Box.of(bad)


def test_a_box_must_lie_inside_the_photo_and_covers_every_pixel_it_touches():
    box = Box(0.4, 10.5, 31.2, 47.9)
    assert box.pixels_in(32, 48) == (0, 10, 32, 48)
    assert Box(0, 0, 32, 48).pixels_in(32, 48) == (0, 0, 32, 48)  # the whole photo
    for outside in (Box(-1, 0, 20, 20), Box(0, -0.5, 20, 20), Box(0, 0, 32.5, 20),
                    Box(0, 0, 20, 49), Box(100, 100, 200, 200)):  # fmt: skip
        with pytest.raises(BadBox, match=r"is outside the 32x48 photo \(x from 0 to 32, y from 0"):
            outside.pixels_in(32, 48)


def test_the_crop_is_in_the_pixels_of_the_photo_as_displayed():
    # Stored 80x40 with red left / blue right and EXIF "rotate 90": displayed 40x80,
    # red on top. A box over the displayed top half is all red.
    upright = load_image(images_factory.exif_rotated_jpeg_bytes((80, 40)), max_pixels=10**6).image
    assert upright.size == (40, 80)
    top, pixels = crop(upright, Box(0, 0, 40, 38))
    assert pixels == (0, 0, 40, 38) and top.size == (40, 38)
    red = np.asarray(top, dtype=np.float32).mean(axis=(0, 1))
    assert red[0] > 200 and red[2] < 60
    bottom, _ = crop(upright, Box(0, 42, 40, 80))
    blue = np.asarray(bottom, dtype=np.float32).mean(axis=(0, 1))
    assert blue[2] > 200 and blue[0] < 60
    with pytest.raises(BadBox, match="outside the 40x80 photo"):
        crop(upright, Box(0, 0, 80, 40))  # the stored orientation's box does not fit


# -- the engine ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(tmp_path_factory, sample_catalogue):
    """The tiny model (random weights: vectors, not quality) on 3 products x 2 shots."""
    model = write_tiny_model(tmp_path_factory.mktemp("models") / "tiny")
    home = tmp_path_factory.mktemp("regions") / "home"
    settings = Settings(home=home, model=str(model), device="cpu", database_url=None,
                        loader_workers=0, _env_file=None)  # fmt: skip
    with Lookalike.open(settings) as opened:
        opened.ingest(sample_catalogue(products=3, shots=2, seed=5))
        yield opened


def scored(result) -> list[tuple[str, float]]:
    return [(hit.item.id, round(hit.score, 5)) for hit in result]


def test_a_boxed_search_embeds_exactly_the_crop(engine, tmp_path):
    photo = images_factory.photo_like(seed=4, size=(200, 120))
    path = tmp_path / "query.png"
    photo.save(path)
    box = (30, 10.5, 150, 100.2)
    expected = engine.embedder.embed_images([photo.crop((30, 10, 150, 101))])
    for query in (path, str(path), path.read_bytes(), photo):
        found = engine.search(query, k=6, box=box)
        assert found.box == (30, 10, 150, 101)
        assert len(found) == 6
        for hit in found:  # each score is the index vector against the crop's embedding
            stored = engine.item_vector(hit.item.id)
            assert hit.score == pytest.approx(float(stored[0] @ expected[0]), abs=1e-4)
    assert scored(engine.search(photo, k=6, box=Box.of("30,10.5,150,100.2"))) == scored(
        engine.search(photo.crop((30, 10, 150, 101)), k=6)
    )
    assert engine.search(photo, k=6).box is None


def test_a_box_on_an_item_crops_its_stored_original(engine):
    item = engine.catalog.items_with_status("indexed")[1]
    original = Image.open(engine.settings.home / item.stored_path).convert("RGB")
    box = (40, 60, 200, 260)
    found = engine.search(ItemQuery(item.id), k=6, box=box)
    assert found.box == box
    assert scored(found) == scored(engine.search(original.crop(box), k=6))
    assert scored(engine.search(item, k=6, box=box)) == scored(found)
    # the whole original, boxed, is the item's own picture again: it comes first
    whole = engine.search(ItemQuery(item.id), k=1, box=(0, 0, item.width, item.height))
    assert whole[0].item.id == item.id and whole[0].score == pytest.approx(1.0, abs=1e-3)


def test_a_box_that_does_not_fit_or_has_no_photo_is_refused(engine, tmp_path):
    item = engine.catalog.items_with_status("indexed")[0]
    path = tmp_path / "query.jpg"
    path.write_bytes(images_factory.jpeg_bytes(seed=2, size=(96, 64)))
    with pytest.raises(BadBox, match=r"box \(0, 0, 97, 64\) is outside the 96x64 photo"):
        engine.search(path, box=(0, 0, 97, 64))
    with pytest.raises(BadBox, match=f"outside the {item.width}x{item.height} photo"):
        engine.search(ItemQuery(item.id), box=(0, 0, item.width + 1, 20))
    with pytest.raises(BadBox, match="inverted"):
        engine.search(path, box="40,40,10,10")
    with pytest.raises(BadBox, match="smaller than the 16x16 minimum"):
        engine.search(path, box=[0, 0, 8, 8])
    with pytest.raises(ValueError, match="a box needs a query photo"):
        engine.search(engine.item_vector(item.id), box=(0, 0, 20, 20))
    with pytest.raises(UnknownItem, match="no item 00"):
        engine.search(ItemQuery("00" * 32), box=(0, 0, 20, 20))


def test_an_item_without_a_stored_original_cannot_be_boxed(engine):
    waiting, _ = engine.catalog.add_item("e" * 64)
    lost, _ = engine.catalog.add_item("d" * 64, stored_path="images/dd/dd/gone.jpg")
    for item in (waiting, lost):
        with pytest.raises(UnknownItem, match=f"item {item.id} has no stored image to crop"):
            engine.search(ItemQuery(item.id), box=(0, 0, 20, 20))
