"""A foreign ONNX model's last layer, found in its graph and replayed in PyTorch for the gradient scores.

The weight and whole-layer gradients need the last layer's input.  In a
user's ONNX file the last layer is the final Conv or ConvTranspose that
reaches the logits through nothing but Resize (bilinear), Identity and Cast;
its attributes give the geometry and its initializers the weights.  Its
input and output are added as graph outputs, and the runtime's features then
go through the same PyTorch head as a PyTorch model's (``TailModule`` below:
the layer and the graph's resize).  Anything else before the logits (two
classifiers added, weights computed in the graph as quantised models do, a
Gemm on a reshaped map, asymmetric padding) leaves the file with the
baselines and the bias gradient, and the reason is said when a gradient that
needs the layer is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PASS_THROUGH = ("Resize", "Identity", "Cast")


@dataclass
class Tail:
    """The graph's last layer: the names of its input and output, the layer in PyTorch, and the resize after it."""

    node: str
    features: str
    output: str
    layer: nn.Module
    resized: bool
    align_corners: bool


class TailModule(nn.Module):
    """The graph's tail in PyTorch: the last layer on the features the graph exposed, resized as the graph does
    to ``size`` (set per pass: the size of the graph's logits)."""

    def __init__(self, tail: Tail) -> None:
        super().__init__()
        self.classifier = tail.layer
        self.resized, self.align_corners = tail.resized, tail.align_corners
        self.size: tuple[int, int] | None = None

    def forward(self, features: Tensor) -> Tensor:
        low = self.classifier(features)
        if not self.resized or self.size is None or tuple(low.shape[-2:]) == tuple(self.size):
            return low
        return F.interpolate(low, self.size, mode="bilinear", align_corners=self.align_corners)


def find_tail(proto, logits: str) -> Tail | str:
    """The last layer before the graph output ``logits``, or the reason there is none that can be used."""
    from onnx import helper, numpy_helper

    producers = {output: node for node in proto.graph.node for output in node.output}
    initializers = {tensor.name: tensor for tensor in proto.graph.initializer}
    node, resized, align_corners = producers.get(logits), False, False
    while node is not None and node.op_type in PASS_THROUGH:
        if node.op_type == "Resize":
            attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            mode = attributes.get("mode", b"nearest").decode()
            transform = attributes.get("coordinate_transformation_mode", b"half_pixel").decode()
            if resized or mode != "linear" or transform not in ("half_pixel", "pytorch_half_pixel", "align_corners"):
                return f"the logits pass a {mode} resize ({transform}) the closed forms do not follow"
            resized, align_corners = True, transform == "align_corners"
        node = producers.get(node.input[0])
    if node is None:
        return "the logits come straight from the graph's input"
    if node.op_type not in ("Conv", "ConvTranspose"):
        what = "two classifiers added" if node.op_type in ("Add", "Sum") else f"a {node.op_type} node"
        return f"the logits come from {what}, not from a final Conv or ConvTranspose"
    if node.input[1] not in initializers or (
        len(node.input) > 2 and node.input[2] and node.input[2] not in initializers
    ):
        return f"the weights of {node.name} are computed in the graph (quantised?), not stored in it"
    weight = torch.from_numpy(numpy_helper.to_array(initializers[node.input[1]]).copy()).float()
    bias = None
    if len(node.input) > 2 and node.input[2]:
        bias = torch.from_numpy(numpy_helper.to_array(initializers[node.input[2]]).copy()).float()
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    layer = _layer(node.op_type, attributes, weight, bias)
    if isinstance(layer, str):
        return f"{node.name}: {layer}"
    return Tail(node.name, node.input[0], node.output[0], layer, resized, align_corners)


def _layer(kind: str, attributes: dict, weight: Tensor, bias: Tensor | None) -> nn.Module | str:
    if weight.dim() != 4:
        return f"a {weight.dim() - 2}-d {kind}; a 2-d one is needed"
    if attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return "auto_pad is not supported; export with explicit pads"
    top, left, bottom, right = attributes.get("pads", [0, 0, 0, 0])
    if (top, left) != (bottom, right):
        return f"asymmetric padding {attributes['pads']}"
    common = dict(
        stride=tuple(attributes.get("strides", (1, 1))), padding=(top, left),
        dilation=tuple(attributes.get("dilations", (1, 1))), groups=attributes.get("group", 1), bias=bias is not None,
    )  # fmt: skip
    if kind == "Conv":
        out, per_group = weight.shape[:2]
        layer = nn.Conv2d(per_group * common["groups"], out, tuple(weight.shape[2:]), **common)
    else:
        inputs, per_group = weight.shape[:2]
        output_padding = tuple(attributes.get("output_padding", (0, 0)))
        layer = nn.ConvTranspose2d(
            inputs, per_group * common["groups"], tuple(weight.shape[2:]), output_padding=output_padding, **common
        )
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer.eval()


def expose(proto, tail: Tail) -> None:
    """Add the last layer's input and output to the graph's outputs (in place)."""
    from onnx import TensorProto, helper

    present = {output.name for output in proto.graph.output}
    for name in (tail.features, tail.output):
        if name not in present:
            proto.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
