"""Lookalike's core library: images in, a searchable sharded faiss index out."""

__version__ = "0.1.0"
