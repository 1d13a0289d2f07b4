"""Official-checkpoint loader on a checkpoint the test writes in the released format."""
from __future__ import annotations

import pytest
import torch

from model.checkpoints import ABN_EPS, convert_official_state_dict, infer_official_options, load_official_checkpoint
from model.net import A2UMatting, batchnorm_modules

# key names read off the official source (resnet.py, hlaspp.py, hlconv.py, decoder.py, BilinearModel.py)
OFFICIAL_KEYS = [
    "layer0.0.weight", "layer0.1.running_var", "bilinear0.bconv_UP.1.bias", "bilinear1.bnv.0.weight",
    "layer1.block3.convs.bn2.running_mean", "layer2_1.layer1.conv1.weight", "layer2_1.layer2.bn2.bias",
    "layer2_1.bilinear.bconv_U.1.weight", "layer2_1.proj_conv.weight", "layer3_1.proj_bn.running_var",
    "layer3_2.block3.convs.conv2.weight", "dconv_pp.aspp1.atrous_conv.1.weight", "dconv_pp.aspp4.atrous_conv.3.bias",
    "dconv_pp.global_avg_pool.1.weight", "dconv_pp.global_avg_pool.2.running_mean", "dconv_pp.bottleneck_conv.0.weight",
    "decoder_layer4.dconv.dep_sep_conv.conv1.weight", "decoder_layer4.dconv.proj_bn.weight",
    "decoder_layer1.dconv1.dep_sep_conv.bn2.running_var", "short0.0.weight", "short3.1.bias", "pred.0.0.weight",
    "pred.0.1.weight", "pred.1.weight",
]


def _official_state(net: A2UMatting, seed: int = 0) -> dict:
    """What the official training script saves: ABN (signed γ, no num_batches_tracked) under `module.`."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in net.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        state["module." + key] = 0.05 * torch.randn(value.shape, generator=gen) if value.is_floating_point() else value
        if key.endswith("running_var"):
            state["module." + key] = state["module." + key].abs() + 0.5
    return {"state_dict": state, "epoch": 30}


def test_official_key_names_exist():
    keys = set(A2UMatting().state_dict())
    assert [k for k in OFFICIAL_KEYS if k not in keys] == []


@pytest.mark.parametrize("share", [True, False])
def test_load_converts_abn_weights_and_strips_prefix(tmp_path, share):
    template = A2UMatting(share=share)
    checkpoint = _official_state(template)
    path = tmp_path / "model_best.pth"
    torch.save(checkpoint, path)
    net = load_official_checkpoint(path)
    assert infer_official_options({k[7:]: v for k, v in checkpoint["state_dict"].items()})["share"] is share
    loaded = net.state_dict()
    bn_names = {name for name, _ in batchnorm_modules(net)}
    for key, value in checkpoint["state_dict"].items():
        name = key[len("module."):]
        module, _, leaf = name.rpartition(".")
        if module in bn_names and leaf == "weight":
            torch.testing.assert_close(loaded[name], value.abs() + ABN_EPS, rtol=0, atol=0)
        else:
            torch.testing.assert_close(loaded[name], value, rtol=0, atol=0)
    assert (loaded["layer0.1.weight"] > 0).all()
    assert loaded["layer0.1.num_batches_tracked"].item() == 0
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(1, 4, 32, 32))
    assert out.shape == (1, 1, 32, 32) and torch.isfinite(out).all()


def test_bare_state_dict_without_prefix_is_accepted():
    net = A2UMatting()
    state = {k[len("module."):]: v for k, v in _official_state(net)["state_dict"].items()}
    converted = convert_official_state_dict(state, net)
    net.load_state_dict(converted)


def test_mismatches_raise_clear_errors(tmp_path):
    net = A2UMatting()
    checkpoint = _official_state(net)
    broken = dict(checkpoint["state_dict"])
    del broken["module.pred.1.weight"]
    broken["module.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing \['pred.1.weight'\].*unexpected \['extra.weight'\]"):
        convert_official_state_dict({"state_dict": broken}, net, "broken.pth")
    with pytest.raises(ValueError, match="shape"):
        convert_official_state_dict(checkpoint, A2UMatting(share=False), "shared.pth")
    with pytest.raises(ValueError, match="not found"):
        load_official_checkpoint(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="junk.pth"):
        load_official_checkpoint(tmp_path / "junk.pth")
    with pytest.raises(ValueError, match="not an A2U checkpoint"):
        convert_official_state_dict({}, net)
