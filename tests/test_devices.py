from __future__ import annotations

import pytest
import torch

from metamodels import devices
from metamodels.errors import MetamodelsError


def test_device_resolution_and_precision_on_this_machine():
    assert devices.device("cpu") == torch.device("cpu")
    assert devices.precision(torch.device("cpu")) is None  # the CPU trains in float32
    assert devices.device("auto").type == ("cuda" if torch.cuda.is_available() else devices.device("auto").type)
    with pytest.raises(MetamodelsError, match="unknown device"):
        devices.device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(MetamodelsError, match="no CUDA GPU"):
            devices.device("cuda")
