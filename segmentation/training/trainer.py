"""The training loop: Adam, ReduceLROnPlateau, validation by stack, checkpoints, resume."""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from segmentation.errors import InputError
from segmentation.inference import cpu_has_fast_bfloat16
from segmentation.io import normalize_percentile, read_labels, read_stack
from segmentation.model import (
    ModelCard,
    build_network,
    load_state_dict,
    read_card,
    resolve_device,
    save_checkpoint,
)
from segmentation.training.augmentation import AugmentationConfig
from segmentation.training.data import (
    PatchDataset,
    TrainingPair,
    read_training_sources,
    split_by_stack,
    split_stack_spatially,
)
from segmentation.training.loss import BCEDiceLoss

logger = logging.getLogger(__name__)

BEST_CHECKPOINT = "best_checkpoint.pytorch"
LAST_CHECKPOINT = "last_checkpoint.pytorch"
RESUME_STATE = "resume_state.pt"
LOG_FILE = "training_log.csv"
LOG_COLUMNS = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_boundary_dice",
    "val_foreground_dice",
    "learning_rate",
    "seconds",
    "elapsed_seconds",
)


@dataclass(frozen=True)
class TrainingConfig:
    """Settings of one training run (all recorded in the model card)."""

    epochs: int = 100
    patch: tuple[int, int, int] = (24, 128, 128)
    batch_size: int = 2
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    patches_per_epoch: int = 64
    val_patches: int = 16
    device: str = "auto"
    bf16: bool = False
    seed: int = 0
    f_maps: int = 16
    early_stopping_patience: int = 20
    scheduler_patience: int = 5
    scheduler_factor: float = 0.5
    lr_schedule: str = "plateau"
    final_lr_fraction: float = 0.02
    w0: float = 10.0
    sigma: float = 5.0
    edge_multiplier: float = 2.0
    map_multiplier: float = 1.0
    invert_weights: bool = False
    boundary_mode: str = "anisotropic-symmetric"
    boundary_connectivity: int = 2
    max_background_fraction: float | None = 0.98
    padding: str = "reflect"
    z_margin: int = 0
    augment: bool = True
    single_channel_fraction: float = 0.0
    name: str = "germseg-unet3d"


@dataclass(frozen=True)
class TrainingSummary:
    """What a training run produced."""

    best_epoch: int
    best_val_loss: float
    epochs_run: int
    seconds: float
    out_dir: Path
    history: list[dict] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch RNGs (training is then repeatable on one machine)."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - third-party code may still use the global RNG
    torch.manual_seed(seed)


def load_training_stack(pair: TrainingPair) -> tuple[np.ndarray, np.ndarray, tuple | None]:
    """Read and normalise one training image and its labels; check that they fit."""
    stack = read_stack(pair.image_path)
    labels = read_labels(pair.labels_path)
    if labels.shape != stack.image.shape[1:]:
        raise InputError(
            f"{pair.labels_path} has shape {labels.shape} but {pair.image_path} has "
            f"{stack.image.shape[1:]}: each mask must match its image"
        )
    return normalize_percentile(stack.image), labels, stack.voxel_size


def training_dataset(
    stacks: list[tuple[np.ndarray, np.ndarray, tuple | None]],
    config: TrainingConfig,
    *,
    names: list[str],
    cache_dir: Path | None = None,
    validation: bool = False,
    keep_labels: bool = False,
) -> PatchDataset:
    """The patch dataset that :func:`train` draws its training (or validation) patches from.

    Parameters
    ----------
    stacks : list of (image, labels, voxel_size)
        Normalised stacks, as :func:`load_training_stack` returns them.
    config : TrainingConfig
        Patch size, targets, weights, augmentation and sampling settings.
    names : list of str
        One name per stack, for messages and weight-map cache files.
    cache_dir : path, optional
        Where weight maps are cached.
    validation : bool
        Validation patches: ``config.val_patches`` of them, no augmentation, patches of
        almost only background (over 98 %) redrawn.
    keep_labels : bool
        Also yield each patch's augmented labels (see :class:`PatchDataset`).
    """
    augmentation = None
    if config.augment and not validation:
        augmentation = AugmentationConfig(p_single_channel=config.single_channel_fraction)
    return PatchDataset(
        [(image, labels) for image, labels, _ in stacks],
        config.patch,
        samples_per_epoch=config.val_patches if validation else config.patches_per_epoch,
        augmentation=augmentation,
        weight_map_options={"w0": config.w0, "sigma": config.sigma},
        edge_options={
            "edge_multiplier": config.edge_multiplier,
            "map_multiplier": config.map_multiplier,
            "invert": config.invert_weights,
        },
        target_options={"mode": config.boundary_mode, "connectivity": config.boundary_connectivity},
        max_background_fraction=0.98 if validation else config.max_background_fraction,
        voxel_sizes=[voxel_size for _, _, voxel_size in stacks],
        cache_dir=cache_dir,
        names=names,
        seed=config.seed + 1 if validation else config.seed,
        padding=config.padding,
        z_margin=config.z_margin,
        keep_labels=keep_labels,
    )


#: Learning-rate schedules of :func:`learning_rate_scheduler`.
LR_SCHEDULES = ("plateau", "cosine")


def check_lr_schedule(name: str) -> None:
    """Refuse a learning-rate schedule that is not one of :data:`LR_SCHEDULES`."""
    if name not in LR_SCHEDULES:
        raise InputError(
            f"unknown learning-rate schedule {name!r}: use one of " + ", ".join(LR_SCHEDULES)
        )


def learning_rate_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainingConfig
) -> torch.optim.lr_scheduler.LambdaLR | torch.optim.lr_scheduler.ReduceLROnPlateau:
    """The learning-rate schedule of a run, stepped once per epoch.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        The run's optimizer, at ``config.learning_rate``.
    config : TrainingConfig
        ``lr_schedule`` "plateau" multiplies the rate by ``scheduler_factor`` after
        ``scheduler_patience`` epochs without validation improvement; "cosine" lowers it
        along half a cosine to ``final_lr_fraction`` of the start at the last epoch, which
        settles a fine-tuning run whose validation loss is too noisy for the plateau rule.

    Returns
    -------
    scheduler
        Step it with the validation loss ("plateau") or without arguments ("cosine").
    """
    check_lr_schedule(config.lr_schedule)
    if config.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=config.scheduler_factor,
            patience=config.scheduler_patience,
        )
    epochs, floor = max(config.epochs, 1), config.final_lr_fraction

    def cosine_factor(epoch: int) -> float:
        # closed form, so a run resumed with more epochs follows the longer schedule
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(epoch, epochs) / epochs))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_factor)


def _dice(probability: torch.Tensor, target: torch.Tensor) -> float:
    intersection = (probability * target).sum()
    return float(2 * intersection / (probability.sum() + target.sum()).clamp_min(1e-6))


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _run_epoch(
    network: torch.nn.Module,
    loader: DataLoader,
    loss_function: BCEDiceLoss,
    device: torch.device,
    *,
    optimizer: torch.optim.Optimizer | None,
    bf16: bool,
) -> dict[str, float]:
    """One pass over ``loader``; trains when an optimizer is given, else evaluates."""
    training = optimizer is not None
    network.train(training)
    total_loss, total_items = 0.0, 0
    boundary_dice, foreground_dice = [], []
    grad_context = contextlib.nullcontext() if training else torch.no_grad()
    with grad_context:
        for batch in loader:
            image = batch["image"].to(device)
            target = batch["target"].to(device)
            weight = batch["weight"].to(device)
            with _autocast(device, bf16):
                logits = network(image)
            loss = loss_function(logits.float(), target, weight)
            if training:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(network.parameters(), max_norm=5.0)
                optimizer.step()
            else:
                probability = torch.sigmoid(logits.float())
                boundary_dice.append(_dice(probability[:, 0], target[:, 0]))
                if probability.shape[1] > 1:
                    foreground_dice.append(_dice(probability[:, 1], target[:, 1]))
            total_loss += float(loss.detach()) * image.shape[0]
            total_items += image.shape[0]
    metrics = {"loss": total_loss / max(total_items, 1)}
    if not training:
        metrics["boundary_dice"] = float(np.mean(boundary_dice)) if boundary_dice else 0.0
        metrics["foreground_dice"] = float(np.mean(foreground_dice)) if foreground_dice else 0.0
    return metrics


def _append_log(path: Path, row: dict) -> None:
    new_file = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
        if new_file:
            writer.writeheader()
        writer.writerow({key: row[key] for key in LOG_COLUMNS})


def train(
    data: str | Path,
    out_dir: str | Path,
    config: TrainingConfig | None = None,
    *,
    init: str | Path | None = None,
    resume: bool = False,
    command: str = "",
    training_data_description: str = "",
) -> TrainingSummary:
    """Train (or fine-tune) the U-Net on labelled stacks.

    Parameters
    ----------
    data : path
        CSV with columns ``image``, ``mask`` and optional ``split``, or a folder of pairs
        (see :func:`segmentation.training.data.read_training_sources`).
    out_dir : path
        Receives ``best_checkpoint.pytorch`` and ``last_checkpoint.pytorch`` (reference layout
        ``{epoch, state_dict}``, each with a model card), ``resume_state.pt`` and
        ``training_log.csv``.
    config : TrainingConfig, optional
        Hyper-parameters.
    init : path, optional
        Weights to start from (fine-tuning); their model card fixes the architecture.
    resume : bool
        Continue from ``out_dir``'s last checkpoint and optimiser state.
    command : str
        The command line, recorded in the model card.
    training_data_description : str
        Free text about the data, recorded in the model card.

    Returns
    -------
    TrainingSummary
    """
    config = config or TrainingConfig()
    if not 0.0 <= config.single_channel_fraction <= 1.0:
        raise InputError(
            f"single-channel fraction {config.single_channel_fraction} is out of range: "
            "use a value from 0 to 1"
        )
    check_lr_schedule(config.lr_schedule)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    device = resolve_device(config.device)

    pairs = read_training_sources(data)
    train_pairs, val_pairs = split_by_stack(pairs, seed=config.seed)
    logger.info("training on %d stacks, validating on %d", len(train_pairs), len(val_pairs))
    train_stacks = [load_training_stack(pair) for pair in train_pairs]
    val_stacks = [load_training_stack(pair) for pair in val_pairs]
    # stacks are named by their image files in messages and weight-map cache names
    train_names = [pair.image_path.name for pair in train_pairs]
    val_names = [pair.image_path.name for pair in val_pairs]
    if not val_stacks:
        val_names = [f"{train_names[0]} (last 20% along X)"]
        image, labels, voxel_size = train_stacks[0]
        (train_image, train_labels), (val_image, val_labels) = split_stack_spatially(image, labels)
        train_stacks[0] = (train_image, train_labels, voxel_size)
        val_stacks = [(val_image, val_labels, voxel_size)]
        logger.warning("one training stack: validating on its last 20%% along X")

    card = (
        read_card(init) if init is not None else ModelCard(name=config.name, f_maps=config.f_maps)
    )
    # the init weights' evaluation does not describe the fine-tuned weights
    # learned edge weights belong to the outputs of the network they were trained on
    card = replace(
        card, name=config.name, patch=list(config.patch), metrics={}, edge_classifier=None
    )
    network = build_network(card)
    if init is not None:
        state_dict, _ = load_state_dict(init)
        network.load_state_dict(state_dict, strict=True)
    network.to(device)

    optimizer = torch.optim.Adam(
        network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    scheduler = learning_rate_scheduler(optimizer, config)
    start_epoch, best_val_loss, best_epoch, stale_epochs = 0, float("inf"), 0, 0
    history: list[dict] = []
    log_path = out_dir / LOG_FILE
    if resume:
        state_path = out_dir / RESUME_STATE
        if not state_path.is_file():
            raise InputError(f"nothing to resume in {out_dir}: {RESUME_STATE} not found")
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        last_state_dict, start_epoch = load_state_dict(out_dir / LAST_CHECKPOINT)
        network.load_state_dict(last_state_dict, strict=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        best_val_loss, best_epoch = state["best_val_loss"], state["best_epoch"]
        stale_epochs, history = state["stale_epochs"], state["history"]
        logger.info("resuming after epoch %d", start_epoch)
    elif log_path.exists():
        log_path.unlink()

    cache_dir = out_dir / "weight_map_cache"
    train_dataset = training_dataset(
        train_stacks, config, names=train_names, cache_dir=cache_dir, validation=False
    )
    val_dataset = training_dataset(
        val_stacks, config, names=val_names, cache_dir=cache_dir, validation=True
    )
    val_loader = DataLoader(val_dataset, batch_size=config.batch_size, shuffle=False)
    # the datasets hold what they need; the labels read for them can go
    del train_stacks, val_stacks
    logger.info(
        "training data hold %.1f GB in memory",
        (train_dataset.nbytes + val_dataset.nbytes) / 1e9,
    )
    loss_function = BCEDiceLoss()

    training_info = {
        "command": command,
        "data": training_data_description or str(data),
        "train_stacks": [str(p.image_path) for p in train_pairs],
        "val_stacks": [str(p.image_path) for p in val_pairs],
        "config": {**asdict(config), "patch": list(config.patch)},
        "init": str(init) if init else None,
    }
    if config.bf16 and device.type == "cpu" and not cpu_has_fast_bfloat16():
        logger.warning(
            "this CPU has no native bfloat16 (AVX-512 or Arm BF16): --bf16 makes training far "
            "slower than float32; leave it off on this machine"
        )
    started = time.perf_counter()
    seconds_before = history[-1]["elapsed_seconds"] if history else 0.0
    from tqdm import tqdm

    epochs = range(start_epoch, config.epochs)
    for epoch in tqdm(
        epochs, desc="training", unit="epoch", initial=start_epoch, total=config.epochs
    ):
        epoch_start = time.perf_counter()
        train_dataset.set_epoch(epoch)
        train_loader = DataLoader(train_dataset, batch_size=config.batch_size, shuffle=True)
        train_metrics = _run_epoch(
            network, train_loader, loss_function, device, optimizer=optimizer, bf16=config.bf16
        )
        val_metrics = _run_epoch(
            network, val_loader, loss_function, device, optimizer=None, bf16=config.bf16
        )
        if config.lr_schedule == "plateau":
            scheduler.step(val_metrics["loss"])
        else:
            scheduler.step()
        elapsed = seconds_before + time.perf_counter() - started
        row = {
            "epoch": epoch + 1,
            "train_loss": round(train_metrics["loss"], 6),
            "val_loss": round(val_metrics["loss"], 6),
            "val_boundary_dice": round(val_metrics["boundary_dice"], 4),
            "val_foreground_dice": round(val_metrics["foreground_dice"], 4),
            "learning_rate": optimizer.param_groups[0]["lr"],
            "seconds": round(time.perf_counter() - epoch_start, 1),
            "elapsed_seconds": round(elapsed, 1),
        }
        history.append(row)
        _append_log(log_path, row)
        logger.info("epoch %d: %s", epoch + 1, row)

        improved = val_metrics["loss"] < best_val_loss
        if improved:
            best_val_loss, best_epoch, stale_epochs = val_metrics["loss"], epoch + 1, 0
        else:
            stale_epochs += 1
        info = {
            **training_info,
            "epochs": epoch + 1,
            "best_epoch": best_epoch,
            "best_val_loss": best_val_loss,
            "wall_time_seconds": round(elapsed, 1),
        }
        epoch_card = replace(card, training=info)
        save_checkpoint(out_dir / LAST_CHECKPOINT, network, epoch_card, epoch + 1)
        if improved:
            save_checkpoint(out_dir / BEST_CHECKPOINT, network, epoch_card, epoch + 1)
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "best_val_loss": best_val_loss,
                "best_epoch": best_epoch,
                "stale_epochs": stale_epochs,
                "history": history,
            },
            out_dir / RESUME_STATE,
        )
        if stale_epochs >= config.early_stopping_patience:
            logger.info("early stopping: %d epochs without improvement", stale_epochs)
            break

    return TrainingSummary(
        best_epoch=best_epoch,
        best_val_loss=best_val_loss,
        epochs_run=len(history),
        seconds=seconds_before + time.perf_counter() - started,
        out_dir=out_dir,
        history=history,
    )
