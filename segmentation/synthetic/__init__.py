"""Synthetic two-channel C. elegans germline phantoms for training and testing."""

from __future__ import annotations

from segmentation.synthetic.phantom import Phantom, make_phantom, write_phantom

__all__ = ["Phantom", "make_phantom", "write_phantom"]
