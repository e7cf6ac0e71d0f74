"""A quality report a shop can read: ``lookalike evaluate … --report DIR``.

From an evaluation's vectors, labels and photos it writes one HTML page with the
overall metrics, a per-class table (worst first), the most confused class pairs
with example photos, and the t-SNE map of the test photos with the class names at
their centres. Modules, one job each: ``per_class`` (each class's Recall@1 and
MAP@R), ``confusion`` (which classes take each other's places, and example
photos), ``legend`` (where the names go on the map), ``figures`` (the PNGs, with
Pillow), ``page`` (the HTML), ``build`` (all of it into a folder).
"""

from indexer.report.build import ReportError, prepare_directory, write_report

__all__ = ["ReportError", "prepare_directory", "write_report"]
