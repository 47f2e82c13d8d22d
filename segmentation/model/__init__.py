"""The U-Net, its checkpoints and model cards."""

from __future__ import annotations

from segmentation.model.card import ModelCard, card_path, read_card, write_card
from segmentation.model.checkpoint import (
    BUNDLED_WEIGHTS_NAME,
    LoadedModel,
    build_network,
    default_weights_path,
    load_model,
    load_state_dict,
    resolve_device,
    save_checkpoint,
)
from segmentation.model.unet3d import UNet3D

__all__ = [
    "BUNDLED_WEIGHTS_NAME",
    "LoadedModel",
    "ModelCard",
    "UNet3D",
    "build_network",
    "card_path",
    "default_weights_path",
    "load_model",
    "load_state_dict",
    "read_card",
    "resolve_device",
    "save_checkpoint",
    "write_card",
]
