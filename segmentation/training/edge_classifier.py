"""Fit the learned region-graph edge weights (:class:`segmentation.graph.EdgeClassifier`)."""

from __future__ import annotations

import logging

import numpy as np
import torch

from segmentation.errors import InputError
from segmentation.graph import EDGE_FEATURES, EdgeClassifier

logger = logging.getLogger(__name__)


def fit_edge_classifier(
    features: np.ndarray,
    targets: np.ndarray,
    *,
    sample_weight: np.ndarray | None = None,
    hidden: int = 32,
    epochs: int = 400,
    learning_rate: float = 1e-2,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> EdgeClassifier:
    """Train a two-hidden-layer perceptron on edge features by weighted binary cross-entropy.

    Full-batch Adam on standardised features; deterministic for a given ``seed``.

    Parameters
    ----------
    features : ndarray, shape (n_edges, len(EDGE_FEATURES))
        From :func:`segmentation.graph.edge_features`.
    targets : ndarray of bool, shape (n_edges,)
        From :func:`segmentation.graph.merge_targets`.
    sample_weight : ndarray, shape (n_edges,), optional
        Weight of each edge in the loss (e.g. more for real data); ones by default.
    hidden : int
        Width of the two hidden layers.
    epochs, learning_rate, weight_decay : int, float, float
        Adam's full-batch steps, step size and L2 penalty.
    seed : int
        Seed of the initial weights.

    Returns
    -------
    EdgeClassifier
    """
    features = np.asarray(features, dtype=np.float64)
    targets = np.asarray(targets, dtype=bool)
    if features.ndim != 2 or features.shape[1] != len(EDGE_FEATURES):
        raise InputError(f"features must be (n_edges, {len(EDGE_FEATURES)}), got {features.shape}")
    if targets.shape != (features.shape[0],) or targets.all() or not targets.any():
        raise InputError("targets need one value per edge, with both merges and cuts")
    weight = np.ones(targets.size) if sample_weight is None else np.asarray(sample_weight, float)
    mean = features.mean(axis=0)
    scale = features.std(axis=0) + 1e-6
    generator = torch.Generator().manual_seed(seed)
    torch_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    with torch.random.fork_rng():
        torch.manual_seed(torch_seed)
        network = torch.nn.Sequential(
            torch.nn.Linear(features.shape[1], hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, 1),
        ).double()
    inputs = torch.from_numpy((features - mean) / scale)
    wanted = torch.from_numpy(targets.astype(np.float64))
    weights = torch.from_numpy(weight)
    optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate, weight_decay=weight_decay)
    for epoch in range(epochs):
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            network(inputs)[:, 0], wanted, weight=weights
        )
        loss.backward()
        optimizer.step()
        if epoch % 100 == 0 or epoch == epochs - 1:
            logger.info("edge classifier: epoch %d, loss %.4f", epoch + 1, loss.item())
    linear = [module for module in network if isinstance(module, torch.nn.Linear)]
    return EdgeClassifier(
        feature_names=EDGE_FEATURES,
        mean=mean,
        scale=scale,
        layers=tuple(
            (layer.weight.detach().numpy().copy(), layer.bias.detach().numpy().copy())
            for layer in linear
        ),
    )
