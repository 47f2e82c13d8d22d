"""Training: targets, weight maps, augmentation, loss, datasets and the trainer."""

from __future__ import annotations
