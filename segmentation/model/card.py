"""Model cards: the JSON file beside each weight file that says how to use it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from segmentation.errors import WeightsError


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to run a checkpoint correctly, and where it came from.

    Attributes
    ----------
    name : str
        Short model name shown in the UI and ``/api/health``.
    in_channels, out_channels, f_maps, num_levels : int
        UNet3D architecture.
    boundary_channel : int
        Output channel holding the boundary logit.
    foreground_channel : int or None
        Output channel holding the foreground logit, if any.
    input_channels : list of str
        What each input channel must contain, in order.
    normalization : dict
        How inputs are normalised (``segmentation.io.normalize_percentile`` arguments).
    patch : list of int
        Window size (Z, Y, X) used in training.
    z_step_range : list of float
        Z step over XY pixel size of the stacks the network was trained on (low, high);
        inference resamples stacks outside it along Z (``resample_z``).
    training : dict
        Data, command, steps, wall time and anything else needed to reproduce the model.
    metrics : dict
        Evaluation results.
    edge_classifier : dict or None
        Learned region-graph edge weights for this network's outputs
        (:class:`segmentation.graph.EdgeClassifier`, ``to_dict`` form), with how they were
        trained under ``"training"``; None weights edges by their mean boundary.
    """

    name: str = "untrained"
    in_channels: int = 2
    out_channels: int = 2
    f_maps: int = 16
    num_levels: int = 4
    boundary_channel: int = 0
    foreground_channel: int | None = 1
    input_channels: list[str] = field(
        default_factory=lambda: ["cytoplasm/germ-granule marker", "plasma-membrane marker"]
    )
    normalization: dict[str, Any] = field(
        default_factory=lambda: {"method": "percentile", "low": 1.0, "high": 99.8}
    )
    patch: list[int] = field(default_factory=lambda: [32, 128, 128])
    z_step_range: list[float] = field(default_factory=lambda: [4.0, 8.0])
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    edge_classifier: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelCard:
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in values.items() if key in known})


def card_path(weights_path: str | Path) -> Path:
    """The model card's path: the weight file's path with the suffix ``.json``."""
    return Path(weights_path).with_suffix(".json")


def write_card(weights_path: str | Path, card: ModelCard) -> Path:
    """Write ``card`` beside ``weights_path`` and return its path."""
    path = card_path(weights_path)
    path.write_text(json.dumps(card.to_dict(), indent=2) + "\n")
    return path


def read_card(weights_path: str | Path) -> ModelCard:
    """Read the model card beside ``weights_path``.

    Raises
    ------
    WeightsError
        When the card is missing or not valid JSON.
    """
    path = card_path(weights_path)
    if not path.is_file():
        raise WeightsError(
            f"model card {path} not found: every weight file needs a JSON card beside it "
            "(see weights/README.md)"
        )
    try:
        return ModelCard.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as error:
        raise WeightsError(f"model card {path} is not valid: {error}") from error
