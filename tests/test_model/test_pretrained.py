"""ImageNet ResNet-34 initialisation of the A2U encoder from a torchvision-format file the test writes itself."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from model.net import A2UMatting
from model.pretrained import (TORCHVISION_RESNET34_FILE, PretrainedWeightsError, load_pretrained_encoder,
                              read_resnet34_state_dict)


def _bn(sd: dict, prefix: str, ch: int, gen: torch.Generator) -> None:
    sd[f"{prefix}.weight"] = torch.rand(ch, generator=gen) + 0.5
    sd[f"{prefix}.bias"] = torch.randn(ch, generator=gen)
    sd[f"{prefix}.running_mean"] = torch.randn(ch, generator=gen)
    sd[f"{prefix}.running_var"] = torch.rand(ch, generator=gen) + 0.1
    sd[f"{prefix}.num_batches_tracked"] = torch.tensor(7)


def torchvision_resnet34_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """The key names and shapes of torchvision's resnet34().state_dict(), random values (written out by hand)."""
    gen = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {"conv1.weight": torch.randn(64, 3, 7, 7, generator=gen)}
    _bn(sd, "bn1", 64, gen)
    inplanes = 64
    for layer, (n_blocks, planes) in enumerate([(3, 64), (4, 128), (6, 256), (3, 512)], start=1):
        for b in range(n_blocks):
            p = f"layer{layer}.{b}"
            cin = inplanes if b == 0 else planes
            sd[f"{p}.conv1.weight"] = torch.randn(planes, cin, 3, 3, generator=gen)
            _bn(sd, f"{p}.bn1", planes, gen)
            sd[f"{p}.conv2.weight"] = torch.randn(planes, planes, 3, 3, generator=gen)
            _bn(sd, f"{p}.bn2", planes, gen)
            if b == 0 and planes != inplanes:
                sd[f"{p}.downsample.0.weight"] = torch.randn(planes, inplanes, 1, 1, generator=gen)
                _bn(sd, f"{p}.downsample.1", planes, gen)
        inplanes = planes
    sd["fc.weight"] = torch.randn(1000, 512, generator=gen)
    sd["fc.bias"] = torch.randn(1000, generator=gen)
    return sd


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    sd = torchvision_resnet34_state_dict()
    path = tmp_path_factory.mktemp("imagenet") / "resnet34.pth"
    torch.save(sd, path)
    return path, sd


def test_block_by_block_mapping(weights_file, caplog):
    path, sd = weights_file
    torch.manual_seed(0)
    net = A2UMatting()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with caplog.at_level(logging.INFO, logger="model.pretrained"):
        report = load_pretrained_encoder(net, str(path))
    after = net.state_dict()

    stem = after["layer0.0.weight"]
    assert stem.shape == (64, 4, 7, 7)
    assert torch.equal(stem[:, :3], sd["conv1.weight"]) and torch.count_nonzero(stem[:, 3]) == 0
    expected = {
        "layer0.1.running_var": "bn1.running_var",
        "layer1.block1.convs.conv1.weight": "layer1.0.conv1.weight",
        "layer1.block3.convs.bn2.bias": "layer1.2.bn2.bias",
        "layer2_1.layer1.conv1.weight": "layer2.0.conv1.weight",   # stride-2 conv reused at stride 1
        "layer2_1.layer2.conv2.weight": "layer2.0.conv2.weight",
        "layer2_1.proj_conv.weight": "layer2.0.downsample.0.weight",
        "layer2_1.proj_bn.running_mean": "layer2.0.downsample.1.running_mean",
        "layer2_2.block1.convs.conv1.weight": "layer2.1.conv1.weight",
        "layer2_2.block3.convs.bn1.weight": "layer2.3.bn1.weight",
        "layer3_1.layer1.bn1.weight": "layer3.0.bn1.weight",
        "layer3_1.proj_conv.weight": "layer3.0.downsample.0.weight",
        "layer3_2.block3.convs.conv2.weight": "layer3.3.conv2.weight",
        "layer3_2.block2.convs.bn2.num_batches_tracked": "layer3.2.bn2.num_batches_tracked",
    }
    for dst, src in expected.items():
        assert torch.equal(after[dst], sd[src]), dst
        assert report.loaded[dst] == src
    # 1 stem conv + 1 stem BN (5) + 11 blocks × (2 conv + 2 BN·5) + 2 projections × (1 + 5)
    assert len(report.loaded) == 1 + 5 + 11 * 12 + 2 * 6
    assert all(key.startswith(("layer3.4.", "layer3.5.", "layer4.", "fc.")) for key in report.dropped)
    assert "layer4.2.conv2.weight" in report.dropped and "fc.bias" in report.dropped
    assert len(report.dropped) + len(report.loaded) == len(sd)
    # generators, ASPP and decoder keep their initialisation, and the report says why
    for key in ("bilinear0.bconv_U.1.weight", "layer2_1.bilinear.bnu.0.weight", "dconv_pp.aspp1.atrous_conv.0.weight",
                "decoder_layer1.dconv.proj_conv.weight", "pred.1.weight"):
        assert torch.equal(after[key], before[key]), key
        assert key in report.not_loaded
    assert "generator" in report.not_loaded["bilinear0.bconv_U.1.weight"]
    assert "pretrained encoder from" in caplog.text and "loaded 150 tensors" in caplog.text
    # the net still runs
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 4, 32, 32)).shape == (1, 1, 32, 32)


def test_baseline_variant_and_file_without_batch_counters(tmp_path):
    sd = {k: v for k, v in torchvision_resnet34_state_dict(1).items() if not k.endswith("num_batches_tracked")}
    sd = {f"module.{k}": v for k, v in sd.items()}  # a DDP-saved file
    path = tmp_path / "old_format.pth"
    torch.save({"state_dict": sd}, path)
    net = A2UMatting(upsampler="bilinear")
    report = load_pretrained_encoder(net, path)
    assert torch.equal(net.state_dict()["layer3_1.layer1.conv1.weight"], sd["module.layer3.0.conv1.weight"])
    assert len(report.loaded) == 150 - 25  # 25 mapped BN layers without a counter in the file
    assert "BN batch counter absent from the file" in report.not_loaded["layer0.1.num_batches_tracked"]


def test_none_leaves_net_untouched():
    net = A2UMatting()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert load_pretrained_encoder(net, "none") is None
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_torchvision_uses_torch_hub_cache(weights_file, tmp_path, monkeypatch):
    path, sd = weights_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    cache = tmp_path / "torch_home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / TORCHVISION_RESNET34_FILE).write_bytes(path.read_bytes())
    net = A2UMatting()
    report = load_pretrained_encoder(net, "torchvision", url="http://127.0.0.1:9/never-used.pth")
    assert report.source == str(cache / TORCHVISION_RESNET34_FILE)
    assert torch.equal(net.state_dict()["layer1.block2.convs.conv2.weight"], sd["layer1.1.conv2.weight"])


def test_torchvision_offline_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))
    with pytest.raises(PretrainedWeightsError, match=r"not cached and downloading http://127\.0\.0\.1:9/.* failed"):
        load_pretrained_encoder(A2UMatting(), "torchvision", url="http://127.0.0.1:9/resnet34-b627a593.pth")


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(PretrainedWeightsError, match=r"nope\.pth does not exist"):
        load_pretrained_encoder(A2UMatting(), str(missing))


def test_not_a_weights_file(tmp_path):
    bad = tmp_path / "notes.pth"
    bad.write_text("this is not a checkpoint")
    with pytest.raises(PretrainedWeightsError, match=r"notes\.pth is not a readable PyTorch weights file"):
        load_pretrained_encoder(A2UMatting(), str(bad))


def test_wrong_shape_names_the_tensor(tmp_path):
    sd = torchvision_resnet34_state_dict()
    sd["layer2.1.conv2.weight"] = torch.randn(128, 128, 5, 5)
    path = tmp_path / "bad_shape.pth"
    torch.save(sd, path)
    net = A2UMatting()
    before = net.state_dict()["layer1.block1.convs.conv1.weight"].clone()
    with pytest.raises(PretrainedWeightsError, match=r"layer2\.1\.conv2\.weight has shape \(128, 128, 5, 5\)"):
        load_pretrained_encoder(net, path)
    assert torch.equal(net.state_dict()["layer1.block1.convs.conv1.weight"], before)  # nothing half-loaded


def test_other_architectures_are_refused(tmp_path):
    # a ResNet-18 file (2 blocks per stage): blocks missing
    sd18 = {k: v for k, v in torchvision_resnet34_state_dict().items()
            if not any(k.startswith(f"layer{s}.{b}.") for s, b in [(1, 2), (2, 2), (2, 3), (3, 2), (3, 3), (3, 4),
                                                                    (3, 5), (4, 2)])}
    torch.save(sd18, tmp_path / "r18.pth")
    with pytest.raises(PretrainedWeightsError, match=r"r18\.pth is not a torchvision ResNet-34 .*missing.*layer1\.2"):
        read_resnet34_state_dict(tmp_path / "r18.pth")
    # a ResNet-50-like file (bottlenecks: an extra conv3 per block)
    sd50 = torchvision_resnet34_state_dict()
    sd50["layer1.0.conv3.weight"] = torch.randn(256, 64, 1, 1)
    torch.save(sd50, tmp_path / "r50.pth")
    with pytest.raises(PretrainedWeightsError, match=r"a ResNet-34 does not have \(first: layer1\.0\.conv3\.weight"):
        read_resnet34_state_dict(tmp_path / "r50.pth")
    # an A2U matting checkpoint is not an ImageNet encoder
    torch.save(A2UMatting().state_dict(), tmp_path / "a2u.pth")
    with pytest.raises(PretrainedWeightsError, match=r"a2u\.pth is not a torchvision ResNet-34"):
        load_pretrained_encoder(A2UMatting(), tmp_path / "a2u.pth")
    # something that is not a state dict at all
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(PretrainedWeightsError, match=r"list\.pth does not hold a state dict"):
        read_resnet34_state_dict(tmp_path / "list.pth")
