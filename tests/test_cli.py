"""The ``germseg`` command line end to end on small phantoms with a tiny random model."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from segmentation.cli import main
from segmentation.model import ModelCard, build_network, save_checkpoint
from segmentation.synthetic import write_phantom


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A randomly initialised small UNet3D (foreground everywhere) with its model card."""
    torch.manual_seed(0)
    card = ModelCard(name="tiny-random", f_maps=8, num_levels=3)
    network = build_network(card)
    with torch.no_grad():
        network.final_conv.bias[card.foreground_channel] = 4.0
    return save_checkpoint(tmp_path_factory.mktemp("weights") / "tiny.pt", network, card, 0)


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom")
    write_phantom(out, shape=(12, 96, 96), seed=3)
    return out


def test_synth_writes_image_and_truth(tmp_path):
    assert main(["synth", "--out", str(tmp_path), "--shape", "8,64,64", "--seed", "5"]) == 0
    image = tifffile.imread(tmp_path / "image.tif")
    labels = tifffile.imread(tmp_path / "labels.tif")
    assert image.shape == (2, 8, 64, 64) and image.dtype == np.uint16
    assert labels.shape == (8, 64, 64) and labels.max() > 0


def test_segment_writes_four_outputs(tmp_path, tiny_weights, phantom_dir, capsys):
    status = main(
        ["segment", str(phantom_dir / "image.tif"), "--out", str(tmp_path),
         "--weights", str(tiny_weights), "--patch", "8,64,64", "--min-size", "1"]
    )
    assert status == 0
    labels = tifffile.imread(tmp_path / "image_labels.tif")
    boundaries = tifffile.imread(tmp_path / "image_boundaries.tif")
    assert labels.shape == boundaries.shape == (12, 96, 96)
    assert labels.dtype == np.uint16 and boundaries.dtype == np.float32
    assert 0.0 <= boundaries.min() and boundaries.max() <= 1.0
    with Image.open(tmp_path / "image_preview.gif") as gif:
        assert gif.n_frames > 1
    header = (tmp_path / "image_cells.csv").read_text().splitlines()[0]
    assert header.startswith("label,voxels")
    assert "window" in capsys.readouterr().err  # the progress bar


def test_bad_input_is_one_line_and_others_still_run(tmp_path, tiny_weights, phantom_dir, capsys):
    not_a_tiff = tmp_path / "notes.tif"
    not_a_tiff.write_text("this is not an image")
    status = main(
        ["segment", str(not_a_tiff), str(phantom_dir / "image.tif"), "--out", str(tmp_path),
         "--weights", str(tiny_weights), "--patch", "8,64,64", "--no-gif"]
    )
    assert status == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "notes.tif" in errors[0]
    assert (tmp_path / "image_labels.tif").is_file()
    assert not (tmp_path / "image_preview.gif").exists()


def test_inputs_with_the_same_name_keep_their_own_outputs(tmp_path, tiny_weights, capsys):
    """Two stacks both called image.tif (one folder per sample) must not overwrite each other."""
    for seed, name in [(3, "worm1"), (4, "worm2")]:
        write_phantom(tmp_path / name, shape=(8, 64, 64), seed=seed)
    inputs = [str(tmp_path / "worm1" / "image.tif"), str(tmp_path / "worm2" / "image.tif")]
    out = tmp_path / "out"
    status = main(
        ["segment", *inputs, "--out", str(out), "--weights", str(tiny_weights),
         "--patch", "8,64,64", "--min-size", "1", "--no-gif"]
    )
    assert status == 0
    assert sorted(path.name for path in out.iterdir()) == sorted(
        [
            "cells.csv",  # both stacks' cells gathered
            *(
                f"{worm}_image_{kind}"
                for worm in ("worm1", "worm2")
                for kind in ("labels.tif", "boundaries.tif", "cells.csv")
            ),
        ]
    )
    first = tifffile.imread(out / "worm1_image_boundaries.tif")
    second = tifffile.imread(out / "worm2_image_boundaries.tif")
    assert not np.array_equal(first, second)
    assert f"-> {out / 'worm2_image'}_*" in capsys.readouterr().err


def test_the_same_input_twice_is_refused_before_any_work(tmp_path, tiny_weights, phantom_dir,
                                                         capsys):
    image = str(phantom_dir / "image.tif")
    status = main(["segment", image, image, "--out", str(tmp_path / "out"),
                   "--weights", str(tiny_weights)])
    assert status == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "given twice" in error
    assert not (tmp_path / "out").exists()


def test_voxel_size_of_an_uncalibrated_stack(tmp_path, phantom_dir, capsys):
    """Without a voxel size distances assume a Z step of 5 pixels; --voxel-size replaces it."""
    uncalibrated = tmp_path / "uncalibrated.tif"
    tifffile.imwrite(uncalibrated, tifffile.imread(phantom_dir / "image.tif"))
    # the bundled model, so that there are cells whose watershed depends on the Z step
    common = ["segment", str(uncalibrated), "--patch", "16,96,96", "--no-gif"]

    assert main([*common, "--out", str(tmp_path / "unknown")]) == 0
    assert "records no voxel size" in capsys.readouterr().err
    assert main([*common, "--out", str(tmp_path / "given"), "--voxel-size", "1,0.2,0.2"]) == 0
    assert "voxel size" not in capsys.readouterr().err
    assert main([*common, "--out", str(tmp_path / "flat"), "--voxel-size", "1,1,1"]) == 0

    def labels(name):
        return tifffile.imread(tmp_path / name / "uncalibrated_labels.tif")

    np.testing.assert_array_equal(labels("unknown"), labels("given"))  # the same 5:1 ratio
    assert not np.array_equal(labels("unknown"), labels("flat"))
    with tifffile.TiffFile(tmp_path / "given" / "uncalibrated_labels.tif") as tif:
        assert tif.imagej_metadata["spacing"] == pytest.approx(1.0)
    rows = (tmp_path / "given" / "uncalibrated_cells.csv").read_text().splitlines()
    assert rows[1].split(",")[2] != ""  # volume in µm³
    rows = (tmp_path / "unknown" / "uncalibrated_cells.csv").read_text().splitlines()
    assert rows[1].split(",")[2] == ""

    assert main([*common, "--out", str(tmp_path / "bad"), "--min-volume", "10"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error:") and "min_volume_um3 needs the voxel size" in error
    assert main([*common, "--out", str(tmp_path / "bad"), "--voxel-size", "1,0.2"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: voxel size must be three positive numbers Z,Y,X")
    assert error.count("\n") == 1 and not (tmp_path / "bad").exists()


def test_missing_weights_fail_clearly(tmp_path, phantom_dir, capsys):
    status = main(
        ["segment", str(phantom_dir / "image.tif"), "--out", str(tmp_path),
         "--weights", str(tmp_path / "absent.pt")]
    )
    assert status == 2
    assert capsys.readouterr().err.strip().startswith("error: weights file")


def test_bad_option_values_are_rejected(capsys):
    assert main(["segment", "x.tif", "--out", "o", "--patch", "8,64"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: invalid patch 8,64") and "Z,Y,X" in error
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", "x.tif", "--out", "o", "--min-size", "many"])
    assert exit_info.value.code == 2
    assert "expected a number, got 'many'" in capsys.readouterr().err


def test_evaluate_perfect_prediction(tmp_path, phantom_dir, capsys):
    truth = phantom_dir / "labels.tif"
    assert main(["evaluate", "--pred", str(truth), "--gt", str(truth), "--json",
                 "--out", str(tmp_path)]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["labels"]["f1_iou50"] == 1.0
    assert (tmp_path / "evaluation.csv").is_file() and (tmp_path / "f1_vs_iou.png").is_file()


def test_evaluate_leaves_out_small_ground_truth_cells(tmp_path, phantom_dir, capsys):
    truth = phantom_dir / "labels.tif"
    assert main(["evaluate", "--pred", str(truth), "--gt", str(truth), "--json",
                 "--min-gt-size", "100000000", "--out", str(tmp_path)]) == 0
    result = next(iter(json.loads(capsys.readouterr().out).values()))
    assert result["n_gt"] == 0 and result["ignored_gt"] > 0
    assert result["ignored_pred"] == result["ignored_gt"]
    assert main(["evaluate", "--pred", str(truth), "--gt", str(truth),
                 "--min-gt-size", "-5", "--out", str(tmp_path)]) == 2
    assert "--min-gt-size -5 is negative" in capsys.readouterr().err


def test_evaluate_batch_csv(tmp_path, phantom_dir):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"pred,gt\n{phantom_dir / 'labels.tif'},{phantom_dir / 'labels.tif'}\n")
    assert main(["evaluate", "--csv", str(pairs), "--out", str(tmp_path)]) == 0
    assert len((tmp_path / "evaluation.csv").read_text().splitlines()) > 1


def test_evaluate_batch_reports_bad_rows_and_keeps_the_others(tmp_path, phantom_dir, capsys):
    import csv

    truth = phantom_dir / "labels.tif"
    for sample in ("a", "b"):
        (tmp_path / sample).mkdir()
        tifffile.imwrite(tmp_path / sample / "labels.tif", tifffile.imread(truth))
    tifffile.imwrite(tmp_path / "small.tif", np.zeros((2, 8, 8), np.uint16))
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(
        f"pred,gt\na/labels.tif,{truth}\nmissing.tif,{truth}\nsmall.tif,{truth}\n"
        f"b/labels.tif,{truth}\n"
    )
    status = main(["evaluate", "--csv", str(pairs), "--out", str(tmp_path / "report")])
    assert status == 2
    errors = capsys.readouterr().err.splitlines()
    assert [line for line in errors if line.startswith("error:")] == [
        line for line in errors if "missing.tif" in line or "small.tif" in line
    ]
    assert len([line for line in errors if line.startswith("error:")]) == 2
    with (tmp_path / "report" / "evaluation.csv").open(newline="") as handle:
        names = {row["name"] for row in csv.DictReader(handle)}
    # both predictions are called labels.tif: the rows are named by their paths instead
    assert names == {"a/labels.tif", "b/labels.tif"}
    assert (tmp_path / "report" / "f1_vs_iou.png").is_file()


def test_python_m_segmentation_is_the_same_command():
    completed = subprocess.run(
        [sys.executable, "-m", "segmentation", "--version"], capture_output=True, text=True
    )
    assert completed.returncode == 0 and completed.stdout.startswith("germseg ")


def test_stack_over_voxel_limit_is_rejected(tmp_path, tiny_weights, phantom_dir, capsys):
    status = main(
        ["segment", str(phantom_dir / "image.tif"), "--out", str(tmp_path),
         "--weights", str(tiny_weights), "--max-voxels", "1000"]
    )
    assert status == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("error:") and "--max-voxels" in message and "\n" not in message


def test_volume_limits_in_cubic_micrometres(tmp_path, tiny_weights, phantom_dir):
    common = ["segment", str(phantom_dir / "image.tif"), "--weights", str(tiny_weights),
              "--patch", "8,64,64", "--min-size", "1", "--no-gif"]
    assert main([*common, "--out", str(tmp_path / "all")]) == 0
    assert main([*common, "--out", str(tmp_path / "none"), "--min-volume", "1e9"]) == 0
    kept = tifffile.imread(tmp_path / "all" / "image_labels.tif")
    removed = tifffile.imread(tmp_path / "none" / "image_labels.tif")
    assert kept.max() > 0 and removed.max() == 0


def test_fragment_ratio_option(tmp_path, tiny_weights, phantom_dir, capsys):
    common = ["segment", str(phantom_dir / "image.tif"), "--weights", str(tiny_weights),
              "--patch", "8,64,64", "--min-size", "1", "--no-gif"]
    assert main([*common, "--out", str(tmp_path / "off"), "--fragment-ratio", "0"]) == 0
    assert main([*common, "--out", str(tmp_path / "on"), "--fragment-ratio", "0.5"]) == 0
    apart = tifffile.imread(tmp_path / "off" / "image_labels.tif")
    merged = tifffile.imread(tmp_path / "on" / "image_labels.tif")
    # merging only joins whole segments: every merged cell is a union of unmerged ones
    assert merged.max() <= apart.max()
    pairs = np.unique(np.stack([apart.ravel(), merged.ravel()]), axis=1)
    assert len(np.unique(pairs[0])) == pairs.shape[1]
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "bad"), "--fragment-ratio", "-1"]) == 2
    message = capsys.readouterr().err
    assert message == "error: fragment_ratio must be between 0 and 1, got -1\n"


def test_rim_distance_option(tmp_path, tiny_weights, phantom_dir, capsys):
    common = ["segment", str(phantom_dir / "image.tif"), "--weights", str(tiny_weights),
              "--patch", "8,64,64", "--min-size", "1", "--no-gif", "--fragment-ratio", "0"]
    assert main([*common, "--out", str(tmp_path / "off"), "--rim-distance", "0"]) == 0
    assert main([*common, "--out", str(tmp_path / "on"), "--rim-distance", "4"]) == 0
    plain = tifffile.imread(tmp_path / "off" / "image_labels.tif")
    grown = tifffile.imread(tmp_path / "on" / "image_labels.tif")
    # growing only labels background voxels: every cell keeps all of its voxels
    np.testing.assert_array_equal(grown[plain > 0], plain[plain > 0])
    assert (grown > 0).sum() >= (plain > 0).sum()
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "bad"), "--rim-distance", "-1"]) == 2
    message = capsys.readouterr().err
    assert message == "error: rim_distance must be between 0 and 20, got -1\n"


def test_foreground_seed_distance_option(tmp_path, tiny_weights, phantom_dir, capsys):
    common = ["segment", str(phantom_dir / "image.tif"), "--weights", str(tiny_weights),
              "--patch", "8,64,64", "--no-gif"]
    assert main([*common, "--out", str(tmp_path / "off"), "--foreground-seed-distance", "0"]) == 0
    assert tifffile.imread(tmp_path / "off" / "image_labels.tif").ndim == 3
    assert main([*common, "--out", str(tmp_path / "flip"), "--test-time-flip"]) == 0
    plain = tifffile.imread(tmp_path / "off" / "image_boundaries.tif")
    flipped = tifffile.imread(tmp_path / "flip" / "image_boundaries.tif")
    assert flipped.shape == plain.shape and not np.array_equal(flipped, plain)
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "bad"), "--foreground-seed-distance", "-3"]) == 2
    message = capsys.readouterr().err
    assert message == "error: foreground_seed_distance must be between 0 and 30, got -3\n"
