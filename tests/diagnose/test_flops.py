"""FLOP counts against published and analytic figures (issue 5, item 1)."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from tunelens.diagnose.flops import FlopCount, count_flops  # noqa: E402


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """torchvision's resnet18, rebuilt (torchvision is not installed here)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths, cin = [64, 128, 256, 512], 64
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            setattr(
                self,
                f"layer{i + 1}",
                nn.Sequential(BasicBlock(cin, w, stride), BasicBlock(w, w, 1)),
            )
            cin = w
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def vgg11() -> nn.Module:
    cfg = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
    layers: list[nn.Module] = []
    cin = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
            cin = v
    return nn.Sequential(
        nn.Sequential(*layers),
        nn.AdaptiveAvgPool2d(7),
        nn.Flatten(),
        nn.Linear(512 * 49, 4096),
        nn.ReLU(True),
        nn.Dropout(),
        nn.Linear(4096, 4096),
        nn.ReLU(True),
        nn.Dropout(),
        nn.Linear(4096, 1000),
    )


def _within(value: float, reference: float, rel: float = 0.01) -> bool:
    return abs(value - reference) <= rel * reference


@pytest.mark.parametrize("training", [False, True])
def test_resnet18_matches_published_figures(training: bool) -> None:
    model = ResNet18()
    count = count_flops(model, torch.randn(1, 3, 224, 224), training=training)
    # published: 1.814 GMACs, 11,689,512 parameters (torchvision model card)
    assert _within(count.flops, 2 * 1.814e9), count.flops
    assert 3.62e9 <= count.flops <= 3.64e9
    assert count.macs == count.flops / 2
    assert count.params == 11_689_512
    assert count.by_module[""] == count.flops
    assert sum(count.self_by_module.values()) == count.flops
    assert count.by_module["layer1"] == count.by_module["layer1.0"] + count.by_module["layer1.1"]
    assert count.by_module["fc"] == 2 * 512 * 1000
    assert count.self_by_module["relu"] == 0
    # batch norm, relu, pooling and the residual add ran without a formula: named
    assert {"aten.native_batch_norm", "aten.max_pool2d_with_indices"} & set(count.uncounted)
    assert "aten.view" not in count.uncounted
    json.dumps(count.to_dict(), allow_nan=False)
    if training:
        assert count.backward_flops is not None
        assert count.backward_flops > count.flops
        assert all(p.grad is None for p in model.parameters())
    assert model.training  # mode restored (a fresh module is in train mode)


def test_training_pass_leaves_batchnorm_statistics_alone() -> None:
    model = ResNet18().eval()
    before = model.bn1.running_mean.clone()
    count_flops(model, torch.randn(2, 3, 64, 64), training=True)
    assert torch.equal(model.bn1.running_mean, before)
    assert not model.training


def test_vgg11_matches_published_figures() -> None:
    count = count_flops(vgg11(), torch.randn(1, 3, 224, 224))
    # published: 7.609 GMACs, 132,863,336 parameters
    assert _within(count.flops, 2 * 7.609e9), count.flops
    assert count.params == 132_863_336


def _encoder_analytic(L: int, d: int, dff: int) -> int:
    qkv = 3 * 2 * L * d * d
    scores = 2 * L * L * d
    weighted = 2 * L * L * d
    out_proj = 2 * L * d * d
    ffn = 2 * 2 * L * d * dff
    return qkv + scores + weighted + out_proj + ffn


@pytest.mark.parametrize("train_mode", [False, True])
@pytest.mark.parametrize("batch_first", [True, False])
def test_transformer_encoder_layer_attention_included(train_mode: bool, batch_first: bool) -> None:
    L, d, dff = 128, 512, 2048
    layer = nn.TransformerEncoderLayer(d, 8, dff, batch_first=batch_first)
    x = torch.randn(1, L, d) if batch_first else torch.randn(L, 1, d)
    layer.train(train_mode)
    count = count_flops(layer, x, training=train_mode)
    expected = _encoder_analytic(L, d, dff)
    assert _within(count.flops, expected), (count.flops, expected)
    assert count.params == sum(p.numel() for p in layer.parameters())
    assert count.params == 4 * d * d + 4 * d + 2 * d * dff + dff + d + 4 * d
    assert count.by_module["self_attn"] == 4 * 2 * L * d * d + 2 * 2 * L * L * d
    assert "aten._transformer_encoder_layer_fwd" not in count.uncounted


@pytest.mark.parametrize("grad", [False, True])
def test_scaled_dot_product_attention_counted(grad: bool) -> None:
    class Attn(nn.Module):
        def forward(self, q):
            return nn.functional.scaled_dot_product_attention(q, q, q)

    L, heads, hd = 64, 4, 32
    q = torch.randn(2, heads, L, hd, requires_grad=grad)
    count = count_flops(Attn(), q, training=grad)
    assert count.flops == 2 * (2 * 2 * L * L * heads * hd)
    assert count.uncounted.get("aten._scaled_dot_product_flash_attention_for_cpu") is None
    if grad:
        assert count.backward_flops is not None and count.backward_flops > 0


def test_multihead_attention_fast_path_counted() -> None:
    L, d = 32, 64
    mha = nn.MultiheadAttention(d, 4, batch_first=True).eval()
    x = torch.randn(1, L, d)
    count = count_flops(mha, (x, x, x))
    assert count.flops == 4 * 2 * L * d * d + 2 * 2 * L * L * d


def test_op_without_formula_is_listed_not_silently_zero() -> None:
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(8, 8)

        def forward(self, x):
            return torch.cumsum(torch.erf(self.lin(x)), dim=1)

    count = count_flops(Odd(), torch.randn(3, 8))
    assert count.flops == 2 * 3 * 8 * 8
    assert count.uncounted["aten.erf"] == 1
    assert count.uncounted["aten.cumsum"] == 1
    assert isinstance(count, FlopCount)
