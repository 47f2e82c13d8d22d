"""Training on tiny phantoms: the loss falls, checkpoints round-trip, resume continues."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import pytest
import torch

from segmentation.errors import InputError
from segmentation.model import default_weights_path, load_model, read_card
from segmentation.synthetic import write_phantom
from segmentation.training.trainer import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    LOG_FILE,
    TrainingConfig,
    train,
)

TINY = TrainingConfig(
    epochs=2,
    patch=(8, 48, 48),
    batch_size=2,
    learning_rate=3e-3,
    patches_per_epoch=4,
    val_patches=2,
    f_maps=8,
    augment=False,
    name="tiny",
)


@pytest.fixture(scope="module")
def training_csv(tmp_path_factory):
    """Three small phantom stacks listed in a CSV; the third is a held-out test stack."""
    root = tmp_path_factory.mktemp("data")
    rows = []
    for seed, split in [(11, "train"), (12, "val"), (13, "test")]:
        image, labels = write_phantom(root / f"s{seed}", shape=(10, 64, 64), seed=seed)
        rows.append(f"{image.relative_to(root)},{labels.relative_to(root)},{split}")
    path = root / "data.csv"
    path.write_text("image,mask,split\n" + "\n".join(rows) + "\n")
    return path


def test_a_few_steps_lower_the_loss(training_csv, tmp_path):
    config = replace(TINY, epochs=8, patches_per_epoch=4, val_patches=2)
    summary = train(training_csv, tmp_path, config)
    losses = [row["train_loss"] for row in summary.history]
    assert min(losses[-3:]) < losses[0]
    assert all(loss >= 0 for loss in losses)


def test_cosine_schedule_lowers_the_rate_every_epoch_to_its_floor_and_resumes(
    training_csv, tmp_path
):
    config = replace(TINY, epochs=4, lr_schedule="cosine", final_lr_fraction=0.1)
    rates = [row["learning_rate"] for row in train(training_csv, tmp_path / "a", config).history]
    assert all(later < earlier for earlier, later in zip(rates, rates[1:], strict=False))
    assert rates[-1] == pytest.approx(config.learning_rate * 0.1)
    # a run stopped after 2 epochs and resumed with 4 follows the 4-epoch schedule
    interrupted = tmp_path / "b"
    train(training_csv, interrupted, replace(config, epochs=2))
    resumed = train(training_csv, interrupted, config, resume=True).history
    assert [row["learning_rate"] for row in resumed[2:]] == pytest.approx(rates[2:])


def test_an_unknown_schedule_is_refused_before_any_data_is_read(tmp_path):
    with pytest.raises(InputError, match="learning-rate schedule 'step'"):
        train(tmp_path / "missing.csv", tmp_path / "out", replace(TINY, lr_schedule="step"))


def test_checkpoints_logs_and_card(training_csv, tmp_path):
    summary = train(training_csv, tmp_path, TINY, command="germseg train ...")
    for name in (BEST_CHECKPOINT, LAST_CHECKPOINT):
        checkpoint = torch.load(tmp_path / name, weights_only=True)
        assert set(checkpoint) == {"epoch", "state_dict"}
    card = read_card(tmp_path / LAST_CHECKPOINT)
    assert card.training["command"] == "germseg train ..."
    assert not any("s13" in path for path in card.training["train_stacks"])  # test row unused
    assert any("s12" in path for path in card.training["val_stacks"])
    loaded = load_model(tmp_path / BEST_CHECKPOINT, device="cpu")
    assert loaded.card.f_maps == 8
    with (tmp_path / LOG_FILE).open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == [1, 2] == [r["epoch"] for r in summary.history]


def test_resume_continues_from_saved_epoch(training_csv, tmp_path):
    train(training_csv, tmp_path, TINY)
    assert torch.load(tmp_path / LAST_CHECKPOINT, weights_only=True)["epoch"] == 2
    summary = train(training_csv, tmp_path, replace(TINY, epochs=3), resume=True)
    assert [row["epoch"] for row in summary.history] == [1, 2, 3]
    assert torch.load(tmp_path / LAST_CHECKPOINT, weights_only=True)["epoch"] == 3


def test_fine_tuning_starts_from_given_weights(training_csv, tmp_path):
    train(training_csv, tmp_path / "base", replace(TINY, epochs=1))
    base = tmp_path / "base" / LAST_CHECKPOINT
    base_card_path = base.with_suffix(".json")
    base_card = json.loads(base_card_path.read_text())
    base_card["metrics"] = {"mean_f1_iou50": 0.9}
    base_card["edge_classifier"] = read_card(default_weights_path()).edge_classifier
    base_card_path.write_text(json.dumps(base_card))
    summary = train(training_csv, tmp_path / "tuned", replace(TINY, epochs=1), init=base)
    assert summary.epochs_run == 1
    tuned_card = read_card(tmp_path / "tuned" / LAST_CHECKPOINT)
    assert tuned_card.training["init"] == str(base)
    # the base model's evaluation and edge weights are not claimed for the fine-tuned weights
    assert tuned_card.metrics == {}
    assert base_card["edge_classifier"] is not None and tuned_card.edge_classifier is None


def test_train_command_line(training_csv, tmp_path):
    from segmentation.cli import main

    status = main(
        ["train", "--data", str(training_csv), "--out", str(tmp_path), "--epochs", "1",
         "--patch", "8,48,48", "--batch", "2", "--patches-per-epoch", "2", "--f-maps", "8",
         "--boundary-mode", "anisotropic", "--w0", "5", "--no-augment", "--name", "cli",
         "--lr-patience", "7", "--padding", "edge", "--z-margin", "2",
         "--single-channel-fraction", "0.3"]
    )
    assert status == 0
    card = read_card(tmp_path / BEST_CHECKPOINT)
    assert card.name == "cli"
    assert card.training["config"]["boundary_mode"] == "anisotropic"
    assert card.training["config"]["w0"] == 5
    assert card.training["config"]["scheduler_patience"] == 7
    assert card.training["config"]["padding"] == "edge"
    assert card.training["config"]["z_margin"] == 2
    assert card.training["config"]["single_channel_fraction"] == 0.3


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_single_channel_fraction_out_of_range_is_refused(training_csv, tmp_path, fraction):
    from segmentation.errors import InputError

    with pytest.raises(InputError, match="single-channel fraction"):
        train(training_csv, tmp_path, replace(TINY, single_channel_fraction=fraction))
    assert not (tmp_path / LAST_CHECKPOINT).exists()


def test_a_stack_smaller_than_the_patch_is_named_by_its_file(training_csv, tmp_path):
    from segmentation.errors import InputError

    root = training_csv.parent
    small_image, small_labels = write_phantom(tmp_path / "small", shape=(4, 32, 32), seed=14)
    data = tmp_path / "data.csv"
    data.write_text(
        f"image,mask,split\n{root / 's11' / 'image.tif'},{root / 's11' / 'labels.tif'},train\n"
        f"{small_image},{small_labels},val\n"
    )
    with pytest.raises(InputError, match=r"^image\.tif: stack \(4, 32, 32\) is too small"):
        train(data, tmp_path / "run", TINY)
    with pytest.raises(InputError, match="too small"):
        train(data, tmp_path / "run", replace(TINY, patch=(8, 16, 16)))
