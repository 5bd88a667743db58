"""Governor networks the tests build (ROS-free, shared by the node and control tests)."""

from __future__ import annotations

from pathlib import Path

import torch

from meetup_ros.control.network import GovernorNet, export_onnx


def always_continue_onnx(path: Path) -> Path:
    """A governor whose 'continue' score always wins by a wide margin (for violations)."""
    net = GovernorNet()
    with torch.no_grad():
        for module in net.layers:
            if isinstance(module, torch.nn.Linear):
                module.weight.zero_()
                module.bias.zero_()
        net.layers[-1].bias.copy_(torch.tensor([10.0, 0.0, 0.0]))
    return export_onnx(net, path)
