"""tunelens.tune.remedies: the registry contract and the finding-driven auto space."""

from __future__ import annotations

import sys

import pytest

from tunelens.errors import InputError
from tunelens.findings import Finding
from tunelens.tune.remedies import (
    HANDLED_KINDS,
    NEEDS,
    REMEDIES,
    REMEDY_NAMES,
    ModelInfo,
    Remedy,
    applies,
    auto_space,
    describe,
    remedy_dist,
)
from tunelens.tune.spaces import Dist

FACTORY = ModelInfo(arch_params=frozenset({"width", "depth", "dropout", "init"}))
TABULAR = ModelInfo()
IMAGE = ModelInfo(input_kind="image", arch_params=frozenset({"width", "depth", "dropout"}))
PRETRAINED = ModelInfo(has_dropout=True, freezable_layers=3, pretrained=True)


def test_registry_names_and_defaults_are_the_contract() -> None:
    expected = {
        "lr": Dist.real(1e-4, 3e-2, log=True),
        "lr_schedule": Dist.choice("constant", "step", "cosine", "onecycle"),
        "warmup_fraction": Dist.real(0.0, 0.2),
        "weight_decay": Dist.real(1e-6, 1e-2, log=True),
        "dropout": Dist.real(0.0, 0.5),
        "grad_clip_norm": Dist.real(0.1, 10.0, log=True),
        "grad_accumulation": Dist.integer(1, 8, log=True),
        "batch_size": Dist.choice(32, 64, 128, 256),
        "noise_std": Dist.real(0.0, 0.3),
        "mixup_alpha": Dist.real(0.0, 0.4),
        "image_augment": Dist.real(0.0, 1.0),
        "init": Dist.choice("default", "kaiming", "xavier", "orthogonal"),
        "width": Dist.integer(16, 512, log=True),
        "depth": Dist.integer(1, 4),
        "early_stopping_patience": Dist.integer(2, 10),
    }
    assert set(REMEDY_NAMES) == set(expected) | {"freeze_layers"}
    assert tuple(REMEDIES) == REMEDY_NAMES
    for name, dist in expected.items():
        assert REMEDIES[name].default == dist, name
    for name, r in REMEDIES.items():
        assert isinstance(r, Remedy) and r.name == name and r.needs in NEEDS and r.doc
        r.default.validate(name)
    assert REMEDIES["dropout"].needs == "dropout"
    assert REMEDIES["width"].needs == REMEDIES["depth"].needs == "arch"
    assert REMEDIES["freeze_layers"].needs == "pretrained"
    assert REMEDIES["image_augment"].needs == "image"
    assert REMEDIES["noise_std"].needs == "tabular"


def test_remedies_module_does_not_import_torch() -> None:
    import subprocess

    code = "import sys, tunelens.tune.remedies; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_describe_and_unknown_names() -> None:
    text = describe("grad_clip_norm")
    assert text.startswith("grad_clip_norm ([0.1, 10], log;")
    assert "clip_grad_norm_" in text
    with pytest.raises(InputError, match="use one of") as e:
        describe("learning_rate")
    assert e.value.field == "space['learning_rate']"


def test_freeze_layers_bound_comes_from_the_model() -> None:
    assert remedy_dist("freeze_layers", PRETRAINED) == Dist.integer(0, 3)
    assert remedy_dist("lr", PRETRAINED) == REMEDIES["lr"].default


def test_applies_follows_needs() -> None:
    assert applies("width", FACTORY) and not applies("width", TABULAR)
    assert applies("dropout", PRETRAINED) and not applies("dropout", TABULAR)
    assert applies("freeze_layers", PRETRAINED) and not applies("freeze_layers", FACTORY)
    assert applies("image_augment", IMAGE) and not applies("image_augment", TABULAR)
    assert applies("noise_std", TABULAR) and not applies("noise_std", IMAGE)
    assert not applies("batch_size", ModelInfo(fixed_batches=True))


def test_default_space_without_findings() -> None:
    space, why = auto_space(TABULAR)
    assert list(space) == ["lr", "lr_schedule", "weight_decay", "batch_size"]
    assert space["lr"] == REMEDIES["lr"].default
    assert why == ["default space: lr, lr_schedule, weight_decay, batch_size (every PyTorch model)"]
    space, why = auto_space(FACTORY)
    assert {"dropout", "width", "depth"} <= set(space)
    assert any(s.startswith("width joins the space as [16, 512], log") for s in why)
    space, _ = auto_space(PRETRAINED)
    assert space["freeze_layers"] == Dist.integer(0, 3) and "dropout" in space
    space, why = auto_space(ModelInfo(fixed_batches=True))
    assert "batch_size" not in space and any("DataLoaders" in s for s in why)


@pytest.mark.parametrize("kind", ["exploding_gradients", "lr_too_high", "non_finite"])
def test_instability_adds_clipping_and_lowers_lr(kind: str) -> None:
    f = Finding(kind, "high", "layer fc2", "grad norm 1e4", "clip gradients")
    space, why = auto_space(TABULAR, [f])
    assert space["grad_clip_norm"] == REMEDIES["grad_clip_norm"].default
    assert space["lr"].low == pytest.approx(1e-5) and space["lr"].high == pytest.approx(3e-3)
    assert why[-1] == (
        f"{kind} at layer fc2: grad_clip_norm joins the space and lr's range moves down to "
        "[1e-5, 3e-3]"
    )


def test_lr_too_low_raises_lr_range() -> None:
    space, why = auto_space(TABULAR, [{"kind": "lr_too_low", "where": "optimizer"}])
    assert space["lr"].low == pytest.approx(1e-3) and space["lr"].high == pytest.approx(0.3)
    assert space["lr"].log
    assert why[-1] == "lr_too_low at optimizer: lr's range moves up to [1e-3, 0.3]"


def test_overfitting_tabular_and_image() -> None:
    space, why = auto_space(FACTORY, [{"kind": "overfitting"}])
    assert space["weight_decay"].high == pytest.approx(0.1)
    assert space["weight_decay"].low == pytest.approx(1e-6)
    assert space["dropout"].high == pytest.approx(0.7) and space["dropout"].low == 0.0
    assert {"noise_std", "mixup_alpha", "early_stopping_patience"} <= set(space)
    assert "image_augment" not in space
    assert why[-1].startswith("overfitting: weight_decay widens upward to [1e-6, 0.1], log")
    assert "noise_std and mixup_alpha join" in why[-1]
    assert "early_stopping_patience joins" in why[-1]

    space, why = auto_space(IMAGE, [{"kind": "overfitting"}])
    assert "image_augment" in space and "noise_std" not in space
    assert "image_augment joins" in why[-1]


@pytest.mark.parametrize("kind", ["vanishing_gradients", "dead_units"])
def test_init_rules(kind: str) -> None:
    space, why = auto_space(FACTORY, [{"kind": kind, "where": "layer 0"}])
    assert space["init"].choices[0] == "kaiming"
    assert set(space["init"].choices) == {"default", "kaiming", "xavier", "orthogonal"}
    assert space["depth"] == Dist.integer(1, 3)
    assert why[-1] == (
        f"{kind} at layer 0: init joins the space (kaiming first) and depth's maximum drops to 3"
    )
    space, why = auto_space(TABULAR, [{"kind": kind}])
    assert "depth" not in space and why[-1] == f"{kind}: init joins the space (kaiming first)"


@pytest.mark.parametrize("kind", ["compute_bound", "memory_bound", "latency_slo"])
def test_speed_findings_halve_width(kind: str) -> None:
    space, why = auto_space(FACTORY, [{"kind": kind, "where": "0"}])
    assert space["width"] == Dist.integer(16, 256, log=True)
    assert why[-1] == f"{kind} at 0: width's maximum is halved to 256 (fewer FLOPs per layer)"
    space, why = auto_space(TABULAR, [{"kind": kind}])
    assert "width" not in space and "cannot be searched" in why[-1]


def test_plateau_restricts_schedule() -> None:
    space, why = auto_space(TABULAR, [{"kind": "plateau"}])
    assert space["lr_schedule"] == Dist.choice("cosine", "onecycle")
    assert space["warmup_fraction"] == REMEDIES["warmup_fraction"].default
    assert "cosine/onecycle" in why[-1]


def test_each_rule_fires_once_and_unknown_kinds_are_explained() -> None:
    findings = [{"kind": "lr_too_high"}, {"kind": "exploding_gradients"}, {"kind": "data_drift"}]
    space, why = auto_space(TABULAR, findings)
    assert space["lr"].high == pytest.approx(3e-3)  # lowered once, not twice
    assert why[-2] == "exploding_gradients: already handled by the earlier lr_too_high finding"
    assert why[-1] == "data_drift: no training remedy for this kind; the space is unchanged"
    for kind in HANDLED_KINDS:
        auto_space(FACTORY, [{"kind": kind}])[0]["lr"].validate("lr")


def test_finding_without_kind_is_input_error() -> None:
    with pytest.raises(InputError) as e:
        auto_space(TABULAR, [{"where": "x"}])
    assert e.value.field == "findings"
