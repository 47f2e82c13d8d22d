"""UNet3D layout, reference-compatible state_dict keys, checkpoints and model cards."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from segmentation.errors import WeightsError
from segmentation.model import (
    ModelCard,
    UNet3D,
    build_network,
    load_model,
    load_state_dict,
    save_checkpoint,
)

# (prefix, groupnorm channels, conv weight shape) for in_channels=2, f_maps=32: spec §2.
REFERENCE_LAYOUT = [
    ("encoders.0.basic_module.SingleConv1", 2, (16, 2, 3, 3, 3)),
    ("encoders.0.basic_module.SingleConv2", 16, (32, 16, 3, 3, 3)),
    ("encoders.1.basic_module.SingleConv1", 32, (32, 32, 3, 3, 3)),
    ("encoders.1.basic_module.SingleConv2", 32, (64, 32, 3, 3, 3)),
    ("encoders.2.basic_module.SingleConv1", 64, (64, 64, 3, 3, 3)),
    ("encoders.2.basic_module.SingleConv2", 64, (128, 64, 3, 3, 3)),
    ("encoders.3.basic_module.SingleConv1", 128, (128, 128, 3, 3, 3)),
    ("encoders.3.basic_module.SingleConv2", 128, (256, 128, 3, 3, 3)),
    ("decoders.0.basic_module.SingleConv1", 384, (128, 384, 3, 3, 3)),
    ("decoders.0.basic_module.SingleConv2", 128, (128, 128, 3, 3, 3)),
    ("decoders.1.basic_module.SingleConv1", 192, (64, 192, 3, 3, 3)),
    ("decoders.1.basic_module.SingleConv2", 64, (64, 64, 3, 3, 3)),
    ("decoders.2.basic_module.SingleConv1", 96, (32, 96, 3, 3, 3)),
    ("decoders.2.basic_module.SingleConv2", 32, (32, 32, 3, 3, 3)),
]


def reference_state_dict(out_channels: int) -> dict[str, torch.Tensor]:
    """A state_dict built only from the spec's key names and shapes, as the reference saves."""
    generator = torch.Generator().manual_seed(0)
    state = {}
    for prefix, norm_channels, conv_shape in REFERENCE_LAYOUT:
        state[f"{prefix}.groupnorm.weight"] = torch.rand(norm_channels, generator=generator)
        state[f"{prefix}.groupnorm.bias"] = torch.rand(norm_channels, generator=generator)
        state[f"{prefix}.conv.weight"] = torch.randn(conv_shape, generator=generator) * 0.01
    state["final_conv.weight"] = torch.randn(out_channels, 32, 1, 1, 1, generator=generator)
    state["final_conv.bias"] = torch.randn(out_channels, generator=generator)
    return state


@pytest.mark.parametrize("out_channels", [1, 2])
def test_reference_checkpoint_loads_strictly(tmp_path, out_channels):
    path = tmp_path / "best_checkpoint.pytorch"
    torch.save({"epoch": 7, "state_dict": reference_state_dict(out_channels)}, path)
    state_dict, epoch = load_state_dict(path)
    network = UNet3D(in_channels=2, out_channels=out_channels, f_maps=32)
    network.load_state_dict(state_dict, strict=True)
    assert epoch == 7
    assert list(network.state_dict()) == list(reference_state_dict(out_channels))
    assert sum(p.numel() for p in network.parameters()) == 4_081_701 + 33 * (out_channels - 1)


def test_dataparallel_prefix_is_stripped(tmp_path):
    path = tmp_path / "wrapped.pytorch"
    wrapped = {f"module.{k}": v for k, v in reference_state_dict(1).items()}
    torch.save({"epoch": 1, "state_dict": wrapped}, path)
    state_dict, _ = load_state_dict(path)
    UNet3D(2, 1, 32).load_state_dict(state_dict, strict=True)


def test_forward_keeps_odd_spatial_shapes():
    network = UNet3D(in_channels=2, out_channels=2, f_maps=4).eval()
    with torch.no_grad():
        logits = network(torch.randn(1, 2, 13, 37, 30))
    assert logits.shape == (1, 2, 13, 37, 30)


def test_checkpoint_round_trip_with_card(tmp_path):
    card = ModelCard(name="tiny", f_maps=4, training={"steps": 3})
    network = build_network(card)
    path = save_checkpoint(tmp_path / "model.pt", network, card, epoch=3)
    saved = torch.load(path, weights_only=True)
    assert set(saved) == {"epoch", "state_dict"} and saved["epoch"] == 3
    assert json.loads(path.with_suffix(".json").read_text())["name"] == "tiny"
    loaded = load_model(path, device="cpu")
    assert loaded.card == card
    for name, tensor in network.state_dict().items():
        assert torch.equal(tensor, loaded.network.state_dict()[name]), name
    x = torch.randn(1, 2, 8, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(network.eval()(x), loaded.network(x), rtol=1e-4, atol=1e-5)


def test_cpu_model_is_channels_last_and_predicts_as_a_contiguous_one(tmp_path):
    from segmentation.inference import predict_probabilities

    card = ModelCard(name="tiny", f_maps=4)
    torch.manual_seed(0)
    network = build_network(card).eval()
    path = save_checkpoint(tmp_path / "model.pt", network, card, epoch=1)
    loaded = load_model(path, device="cpu")
    conv = loaded.network.encoders[0].basic_module.SingleConv1.conv.weight
    assert conv.is_contiguous(memory_format=torch.channels_last_3d)
    image = np.random.default_rng(0).normal(size=(2, 12, 40, 40)).astype(np.float32)
    arguments = {"patch": (8, 24, 24), "overlap": 0.25, "multiple_of": 8}
    expected = predict_probabilities(network, image, **arguments)
    np.testing.assert_allclose(
        predict_probabilities(loaded.network, image, **arguments), expected, atol=1e-5
    )


def test_missing_weights_give_clear_error(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        load_model(tmp_path / "absent.pt", device="cpu")


def test_card_mismatch_gives_clear_error(tmp_path):
    path = save_checkpoint(
        tmp_path / "m.pt", build_network(ModelCard(f_maps=4)), ModelCard(f_maps=4), 1
    )
    path.with_suffix(".json").write_text(json.dumps(ModelCard(f_maps=8).to_dict()))
    with pytest.raises(WeightsError, match="do not match its model card"):
        load_model(path, device="cpu")


def test_corrupt_weights_give_clear_error(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(b"not a checkpoint")
    path.with_suffix(".json").write_text(json.dumps(ModelCard().to_dict()))
    with pytest.raises(WeightsError, match="cannot read"):
        load_model(path, device="cpu")
