"""Write the bundled model's card for a new training stage, keeping the earlier stages.

``germseg train`` writes a card that describes only its own run. The bundled model was
trained in stages, so its card keeps every stage: this script takes the card of the
weights a stage started from (``--init-card``), adds the new stage's run under
``training.stageN`` (command, epochs, best epoch and loss, wall time, data, config), adds
its steps and patches to the totals, sets the name and data description, and writes the
result beside the new weights, leaving ``metrics`` for ``benchmarks/eval_model.py``.

Usage:
    python weights/stage_card.py --init-card OLD.json --run-card RUN/best_checkpoint.json \
        --stage 8 --out weights/germseg_unet3d.json [--data TEXT] [--hardware TEXT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def stage_card(
    init_card: dict,
    run_card: dict,
    stage: int,
    *,
    epochs_run: int | None = None,
    data: str = "",
    hardware: str = "",
) -> dict:
    """The init card with the run's stage added (a new dict; the inputs are not changed).

    ``run_card`` is the card of the checkpoint that is shipped (the best or the last): its steps
    and patches are what the shipped weights saw; ``epochs_run`` is how many epochs the
    run went on for (the last checkpoint's), when it differs.
    """
    run = run_card["training"]
    config = run["config"]
    patches = run["epochs"] * config["patches_per_epoch"]
    steps = run["epochs"] * -(-config["patches_per_epoch"] // config["batch_size"])
    card = json.loads(json.dumps(init_card))
    training = card.setdefault("training", {})
    training[f"stage{stage}"] = {
        "command": run["command"],
        "epochs": run["epochs"],
        "best_epoch": run["best_epoch"],
        "best_val_loss": run["best_val_loss"],
        "wall_time_seconds": run["wall_time_seconds"],
        "train_stacks": len(run["train_stacks"]),
        "val_stacks": len(run["val_stacks"]),
        "steps": steps,
        "patches_seen": patches,
        "epochs_run": epochs_run or run["epochs"],
        "shipped": f"{'best' if run['epochs'] == run['best_epoch'] else 'last'} checkpoint "
        f"(epoch {run['epochs']} of {epochs_run or run['epochs']})",
    }
    training[f"config_stage{stage}"] = config
    training["steps"] = training.get("steps", 0) + steps
    training["patches_seen"] = training.get("patches_seen", 0) + patches
    if data:
        training["data"] = data
    if hardware:
        training["hardware"] = hardware
    card["name"] = run_card["name"]
    card["patch"] = run_card["patch"]
    card["z_step_range"] = run_card.get("z_step_range", [4.0, 8.0])
    card["metrics"] = {}
    return card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init-card", type=Path, required=True)
    parser.add_argument("--run-card", type=Path, required=True)
    parser.add_argument(
        "--last-card", type=Path, help="the run's last checkpoint card (epochs run)"
    )
    parser.add_argument("--stage", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", default="")
    parser.add_argument("--hardware", default="")
    args = parser.parse_args()
    card = stage_card(
        json.loads(args.init_card.read_text()),
        json.loads(args.run_card.read_text()),
        args.stage,
        epochs_run=(
            json.loads(args.last_card.read_text())["training"]["epochs"] if args.last_card else None
        ),
        data=args.data,
        hardware=args.hardware,
    )
    args.out.write_text(json.dumps(card, indent=1) + "\n")


if __name__ == "__main__":
    main()
