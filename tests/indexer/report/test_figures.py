"""indexer.report.figures: a confused pair's picture, also when a photo has gone since."""

import images_factory
import numpy as np
from PIL import Image

from indexer.report.confusion import ConfusedPair, ExamplePair
from indexer.report.figures import class_colours, fit_text, font, render_pair


def test_a_pair_picture_has_a_row_per_example_and_survives_a_missing_photo(tmp_path):
    paths = []
    for number in range(3):
        path = tmp_path / f"photo-{number}.jpg"
        images_factory.class_photo(number, 0, size=(120, 80)).save(path)
        paths.append(path)
    paths.append(tmp_path / "deleted-since.jpg")
    pair = ConfusedPair("Arla-Sour-Cream", "Arla-Ecological-Sour-Cream", 0.2, 0.1)
    examples = [ExamplePair(0, 1, 0.9, 0.8, 0.95), ExamplePair(2, 3, 0.7, 0.75, 0.8)]
    colours = class_colours([pair.first, pair.second])
    out = render_pair(pair, examples, paths, colours, tmp_path / "pair.png",
                      max_pixels=10_000_000, thumb=100)
    image = Image.open(out)
    one, two = (
        render_pair(pair, examples[:n], paths, colours, tmp_path / f"{n}.png",
                    max_pixels=10_000_000, thumb=100) for n in (1, 2)
    )
    row = Image.open(two).height - Image.open(one).height
    assert row > 100 and image.size == Image.open(two).size
    # The first photo is pasted into its frame (not left as the grey cell).
    pixels = np.asarray(image.convert("RGB")).astype(int)
    top_row = pixels[:, : image.width // 3]
    assert (np.abs(top_row - [243, 243, 243]).max(axis=2) > 30).sum() > 2000


def test_long_names_are_shortened_to_fit():
    face = font(14)
    short = fit_text("Garant-Ecological-Medium-Fat-Milk", 120, face)
    assert short.endswith("…") and face.getlength(short) <= 120
    assert fit_text("Leek", 120, face) == "Leek"
