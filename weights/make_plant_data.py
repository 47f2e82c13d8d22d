"""Split the real plant-membrane crop for training and validation and list it in a data CSV.

Usage: python weights/make_plant_data.py PLANT_DIR DATA_DIR [REPEAT]

``PLANT_DIR`` holds ``image.tif`` and ``labels.tif`` (``shared/data/plant-membrane-patch``:
(64, 200, 200), one membrane channel, 106 cells). The crop is cut along X: the first
``TRAIN_WIDTH`` pixels train, the rest validate (cells cut by the split are relabelled per
part). Both parts are written to ``DATA_DIR/plant/`` with an isotropic voxel size (the crop
records none; its cells are about as many planes tall as they are pixels wide), and rows
are appended to ``DATA_DIR/data.csv``: the training part ``REPEAT`` times (default 12), so
that its patches are drawn about as often as a few phantom stacks' (patches are drawn in
proportion to stack size), and the validation part once with split ``val``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import tifffile
from skimage.measure import label as connected_components

#: X pixels of the crop used for training; the remaining ones validate.
TRAIN_WIDTH = 120


def _write(path: Path, array: np.ndarray) -> None:
    tifffile.imwrite(
        path,
        array,
        metadata={"axes": "ZYX", "spacing": 1.0, "unit": "um"},
        resolution=(1.0, 1.0),
        resolutionunit="NONE",
        photometric="minisblack",
    )


def main() -> None:
    plant, data = Path(sys.argv[1]), Path(sys.argv[2])
    repeat = int(sys.argv[3]) if len(sys.argv) > 3 else 12
    image = tifffile.imread(plant / "image.tif")
    labels = tifffile.imread(plant / "labels.tif")
    out = data / "plant"
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, part in (("train", slice(0, TRAIN_WIDTH)), ("val", slice(TRAIN_WIDTH, None))):
        part_labels = connected_components(labels[:, :, part], background=0, connectivity=1)
        _write(out / f"{name}_image.tif", image[:, :, part])
        _write(out / f"{name}_labels.tif", part_labels.astype(np.uint16))
        row = f"plant/{name}_image.tif,plant/{name}_labels.tif,{name}"
        rows.extend([row] * (repeat if name == "train" else 1))
    with (data / "data.csv").open("a") as handle:
        handle.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
