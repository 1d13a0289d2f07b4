"""`model.pretrained` in the training config: default, accepted values, refusal of a missing weights file."""
from __future__ import annotations

import pytest

from jobs.config import load_config
from jobs.errors import JobError


def test_default_is_none_and_values_are_accepted(tmp_path):
    assert load_config(None).model.pretrained == "none"
    assert load_config(None, ["model.pretrained=torchvision"]).model.pretrained == "torchvision"
    weights = tmp_path / "resnet34.pth"
    weights.write_bytes(b"checked when loaded, not here")
    assert load_config(None, [f"model.pretrained={weights}"]).model.pretrained == str(weights)


def test_missing_weights_file_is_refused_before_training(tmp_path):
    with pytest.raises(JobError, match=r"model\.pretrained .*'.*nowhere\.pth' does not exist"):
        load_config(None, [f"model.pretrained={tmp_path / 'nowhere.pth'}"])
    with pytest.raises(JobError, match=r"model\.pretrained must be"):
        load_config(None, ["model.pretrained=3"])
