"""The remedy registry: named training remedies, their default ranges, and an auto space.

A *remedy* is one knob of PyTorch training that a finding can ask for (``lr``,
``grad_clip_norm``, ``dropout`` ...). Each has a default :class:`~tunelens.tune.Dist` and a
``needs`` tag saying when it applies. :func:`auto_space` turns what a model supports plus
the findings about it into a search space, with one plain sentence per decision::

    space, why = auto_space(ModelInfo(input_kind="tabular"), [finding])

The names in :data:`REMEDY_NAMES` are a contract (the ``tune`` CLI config uses them).
This module does not import torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tunelens.errors import InputError
from tunelens.tune.spaces import Dist

__all__ = [
    "HANDLED_KINDS",
    "NEEDS",
    "REMEDIES",
    "REMEDY_NAMES",
    "ModelInfo",
    "Remedy",
    "applies",
    "auto_space",
    "describe",
    "remedy_dist",
]

Needs = Literal["any", "dropout", "arch", "pretrained", "image", "tabular"]
#: the ``needs`` tags and what they mean
NEEDS: dict[str, str] = {
    "any": "every PyTorch model",
    "dropout": "the model has nn.Dropout layers or is a factory taking dropout=",
    "arch": "the model is a factory taking width=/depth=",
    "pretrained": "a model instance with pretrained weights (fine-tuning)",
    "image": "image inputs (4-D X: N, C, H, W)",
    "tabular": "tabular inputs (2-D X: N, features)",
}


@dataclass(frozen=True)
class Remedy:
    """One named remedy.

    Attributes:
        name: the key used in a search space and in the config file.
        default: the distribution searched when the remedy joins a space.
        doc: what the value does in the training loop.
        needs: when the remedy applies (a key of :data:`NEEDS`).
    """

    name: str
    default: Dist
    doc: str
    needs: str


def _r(name: str, default: Dist, needs: Needs, doc: str) -> tuple[str, Remedy]:
    return name, Remedy(name, default, doc, needs)


REMEDIES: dict[str, Remedy] = dict(
    [
        _r("lr", Dist.real(1e-4, 3e-2, log=True), "any", "AdamW learning rate (peak)."),
        _r(
            "lr_schedule",
            Dist.choice("constant", "step", "cosine", "onecycle"),
            "any",
            "Learning-rate schedule stepped per optimizer step: constant; step (x0.1 at 50% "
            "and 75% of the steps); cosine (annealed to 0); onecycle (torch OneCycleLR).",
        ),
        _r(
            "warmup_fraction",
            Dist.real(0.0, 0.2),
            "any",
            "Linear warm-up from 0 to lr over this fraction of the optimizer steps, then "
            "the schedule.",
        ),
        _r(
            "weight_decay",
            Dist.real(1e-6, 1e-2, log=True),
            "any",
            "AdamW decoupled weight decay.",
        ),
        _r(
            "dropout",
            Dist.real(0.0, 0.5),
            "dropout",
            "Dropout probability: passed to a factory as dropout=, or set as p of every "
            "nn.Dropout of a model instance.",
        ),
        _r(
            "grad_clip_norm",
            Dist.real(0.1, 10.0, log=True),
            "any",
            "Clip the total gradient norm to this value before each optimizer step "
            "(torch.nn.utils.clip_grad_norm_).",
        ),
        _r(
            "grad_accumulation",
            Dist.integer(1, 8, log=True),
            "any",
            "Accumulate gradients over this many batches per optimizer step.",
        ),
        _r(
            "batch_size",
            Dist.choice(32, 64, 128, 256),
            "any",
            "Training batch size (not searchable when data is given as DataLoaders).",
        ),
        _r(
            "noise_std",
            Dist.real(0.0, 0.3),
            "tabular",
            "Gaussian input noise added to training batches, in units of each feature's std.",
        ),
        _r(
            "mixup_alpha",
            Dist.real(0.0, 0.4),
            "any",
            "Mixup: mix each batch with a shuffled copy by lambda ~ Beta(alpha, alpha); 0 = off.",
        ),
        _r(
            "image_augment",
            Dist.real(0.0, 1.0),
            "image",
            "Augmentation strength s: random horizontal flips (p = 0.5*s), random crops "
            "after padding round(4*s) px, rotations up to 15*s degrees.",
        ),
        _r(
            "init",
            Dist.choice("default", "kaiming", "xavier", "orthogonal"),
            "any",
            "Weight initialisation of Linear/Conv layers (default keeps PyTorch's; on a "
            "pretrained model only the trainable layers are re-initialised).",
        ),
        _r(
            "width",
            Dist.integer(16, 512, log=True),
            "arch",
            "MLP hidden units / CNN channels of the first block (factory width=).",
        ),
        _r(
            "depth",
            Dist.integer(1, 4),
            "arch",
            "MLP hidden layers / CNN conv blocks (factory depth=).",
        ),
        _r(
            "freeze_layers",
            Dist.integer(0, 4),
            "pretrained",
            "Fine-tuning depth: how many leading parameterised child layers of a pretrained "
            "model stay frozen; the upper bound is set from the model (see remedy_dist).",
        ),
        _r(
            "early_stopping_patience",
            Dist.integer(2, 10),
            "any",
            "Stop a trial after this many epochs without validation improvement.",
        ),
    ]
)

#: every remedy name, in registry order
REMEDY_NAMES: tuple[str, ...] = tuple(REMEDIES)


@dataclass(frozen=True)
class ModelInfo:
    """What a model supports, as far as the remedies are concerned.

    Attributes:
        has_dropout: the model has ``nn.Dropout`` layers, or the factory takes ``dropout=``.
        arch_params: the architecture keywords a factory accepts, among ``width``,
            ``depth``, ``dropout``, ``init`` (empty for a model instance).
        freezable_layers: leading parameterised child layers of a model instance that
            ``freeze_layers`` may freeze (the last one, the head, always trains).
        pretrained: the model is an instance whose weights are kept (fine-tuning), so
            ``freeze_layers`` applies.
        input_kind: ``"tabular"`` (2-D inputs) or ``"image"`` (4-D inputs).
        fixed_batches: data comes as DataLoaders, so ``batch_size`` cannot be searched.
        classification: whether the task is classification (mixup on labels as one-hot).
    """

    has_dropout: bool = False
    arch_params: frozenset[str] = field(default_factory=frozenset)
    freezable_layers: int = 0
    pretrained: bool = False
    input_kind: Literal["tabular", "image"] = "tabular"
    fixed_batches: bool = False
    classification: bool = True

    @property
    def is_factory_with_arch(self) -> bool:
        """The model is a factory taking ``width=`` and ``depth=``."""
        return {"width", "depth"} <= self.arch_params


def describe(name: str) -> str:
    """One line: the remedy, its default range and what it does.

    Raises:
        InputError: ``name`` is not a remedy.
    """
    r = _get(name)
    return f"{r.name} ({_fmt_dist(r.default)}; applies to {NEEDS[r.needs]}): {r.doc}"


def applies(name: str, info: ModelInfo) -> bool:
    """Whether remedy ``name`` can act on a model described by ``info``."""
    r = _get(name)
    if r.name == "batch_size" and info.fixed_batches:
        return False
    if r.name == "width":
        return "width" in info.arch_params
    if r.name == "depth":
        return "depth" in info.arch_params
    return {
        "any": True,
        "dropout": info.has_dropout or "dropout" in info.arch_params,
        "arch": info.is_factory_with_arch,
        "pretrained": info.pretrained and info.freezable_layers > 0,
        "image": info.input_kind == "image",
        "tabular": info.input_kind == "tabular",
    }[r.needs]


def remedy_dist(name: str, info: ModelInfo | None = None) -> Dist:
    """The default distribution of ``name`` adapted to the model (``freeze_layers`` bound).

    Raises:
        InputError: ``name`` is not a remedy.
    """
    r = _get(name)
    if name == "freeze_layers" and info is not None:
        return Dist.integer(0, max(0, info.freezable_layers))
    return r.default


def _get(name: str) -> Remedy:
    if name not in REMEDIES:
        raise InputError(f"space[{name!r}]", "unknown remedy", f"use one of {REMEDY_NAMES}")
    return REMEDIES[name]


def _fmt_num(x: float | None) -> str:
    if x is None:
        return "?"
    if x != 0 and (abs(x) < 1e-2 or abs(x) >= 1e4):
        mant, exp = f"{x:.3e}".split("e")
        mant = mant.rstrip("0").rstrip(".")
        return f"{mant}e{int(exp)}"
    return f"{x:g}"


def _fmt_dist(d: Dist) -> str:
    if d.kind == "categorical":
        return "one of " + ", ".join(repr(c) for c in d.choices)
    scale = ", log" if d.log else ""
    return f"[{_fmt_num(d.low)}, {_fmt_num(d.high)}]{scale}"


def _kind_where(f: Any) -> tuple[str, str]:
    if isinstance(f, Mapping):
        kind = f.get("kind")
        where = f.get("where", "") or ""
    else:
        kind = getattr(f, "kind", None)
        where = getattr(f, "where", "") or ""
    if not isinstance(kind, str):
        raise InputError(
            "findings", f"each finding needs a 'kind', got {f!r}", "pass Finding objects"
        )
    return kind, str(where)


def _scaled(d: Dist, factor: float) -> Dist:
    assert d.low is not None and d.high is not None
    return Dist.real(d.low * factor, d.high * factor, log=d.log)


#: finding kinds that :func:`auto_space` acts on
HANDLED_KINDS: tuple[str, ...] = (
    "exploding_gradients",
    "lr_too_high",
    "non_finite",
    "lr_too_low",
    "overfitting",
    "vanishing_gradients",
    "dead_units",
    "compute_bound",
    "memory_bound",
    "latency_slo",
    "plateau",
)


def auto_space(
    model_info: ModelInfo, findings: Iterable[Any] = ()
) -> tuple[dict[str, Dist], list[str]]:
    """Build a remedy search space from what the model supports and from findings.

    Without findings: ``lr``, ``lr_schedule``, ``weight_decay``, ``batch_size`` (unless the
    data are DataLoaders), plus ``dropout``/``width``/``depth`` when the model supports
    them and ``freeze_layers`` for a pretrained model. Each finding then changes the space:

    * ``exploding_gradients``, ``lr_too_high``, ``non_finite``: add ``grad_clip_norm``;
      the ``lr`` range moves down 10x.
    * ``lr_too_low``: the ``lr`` range moves up 10x (capped at 1.0).
    * ``overfitting``: the maxima of ``weight_decay`` (x10, at least 0.1) and ``dropout``
      (to 0.7) rise; add ``noise_std`` and ``mixup_alpha`` (tabular) or ``image_augment``
      (images); add ``early_stopping_patience``.
    * ``vanishing_gradients``, ``dead_units``: add ``init`` (kaiming first); ``depth`` max
      lowered by one (not below its minimum).
    * ``compute_bound``, ``memory_bound``, ``latency_slo``: ``width`` max halved.
    * ``plateau``: ``lr_schedule`` restricted to cosine/onecycle, ``warmup_fraction`` added.

    Each rule fires once however many findings of that kind are given. Other kinds are
    explained as ignored.

    Args:
        model_info: what the model supports (:class:`ModelInfo`).
        findings: :class:`tunelens.findings.Finding` objects or dicts with ``"kind"``
            (and optionally ``"where"``).

    Returns:
        ``(space, explanation)``: the space as ``{remedy: Dist}`` and one sentence per
        decision.

    Raises:
        InputError: a finding without a kind.

    Example:
        >>> space, why = auto_space(ModelInfo(), [{"kind": "lr_too_high", "where": "optimizer"}])
        >>> "grad_clip_norm" in space
        True
    """
    space: dict[str, Dist] = {}
    why: list[str] = []
    for name in ("lr", "lr_schedule", "weight_decay", "batch_size"):
        if applies(name, model_info):
            space[name] = REMEDIES[name].default
    base = [n for n in space]
    why.append(f"default space: {', '.join(base)} (every PyTorch model)")
    if model_info.fixed_batches:
        why.append("batch_size is left out: the data come as DataLoaders with a fixed batch size")
    for name in ("dropout", "width", "depth", "freeze_layers"):
        if applies(name, model_info):
            space[name] = remedy_dist(name, model_info)
            why.append(
                f"{name} joins the space as {_fmt_dist(space[name])}: the model supports it "
                f"({NEEDS[REMEDIES[name].needs]})"
            )

    done: dict[str, str] = {}
    for f in findings:
        kind, where = _kind_where(f)
        head = f"{kind} at {where}" if where else kind
        rule = _RULE_OF.get(kind)
        if rule is None:
            why.append(f"{head}: no training remedy for this kind; the space is unchanged")
            continue
        if rule in done:
            why.append(f"{head}: already handled by the earlier {done[rule]} finding")
            continue
        done[rule] = kind
        why.append(f"{head}: " + _RULES[rule](space, model_info))
    return space, why


def _rule_unstable(space: dict[str, Dist], info: ModelInfo) -> str:
    space["grad_clip_norm"] = REMEDIES["grad_clip_norm"].default
    lr = _scaled(space.get("lr", REMEDIES["lr"].default), 0.1)
    space["lr"] = lr
    return (
        f"grad_clip_norm joins the space and lr's range moves down to "
        f"[{_fmt_num(lr.low)}, {_fmt_num(lr.high)}]"
    )


def _rule_lr_low(space: dict[str, Dist], info: ModelInfo) -> str:
    cur = space.get("lr", REMEDIES["lr"].default)
    assert cur.low is not None and cur.high is not None
    high = min(1.0, cur.high * 10)
    lr = Dist.real(min(cur.low * 10, high), high, log=True)
    space["lr"] = lr
    return f"lr's range moves up to [{_fmt_num(lr.low)}, {_fmt_num(lr.high)}]"


def _rule_overfit(space: dict[str, Dist], info: ModelInfo) -> str:
    parts = []
    wd = space.get("weight_decay", REMEDIES["weight_decay"].default)
    assert wd.low is not None and wd.high is not None
    space["weight_decay"] = Dist.real(wd.low, max(wd.high * 10, 1e-1), log=True)
    parts.append(f"weight_decay widens upward to {_fmt_dist(space['weight_decay'])}")
    if applies("dropout", info):
        dp = space.get("dropout", REMEDIES["dropout"].default)
        assert dp.low is not None and dp.high is not None
        space["dropout"] = Dist.real(dp.low, min(0.7, max(dp.high, 0.5) + 0.2))
        parts.append(f"dropout widens upward to {_fmt_dist(space['dropout'])}")
    if info.input_kind == "image":
        space["image_augment"] = REMEDIES["image_augment"].default
        parts.append("image_augment joins")
    else:
        space["noise_std"] = REMEDIES["noise_std"].default
        space["mixup_alpha"] = REMEDIES["mixup_alpha"].default
        parts.append("noise_std and mixup_alpha join")
    space["early_stopping_patience"] = REMEDIES["early_stopping_patience"].default
    parts.append("early_stopping_patience joins")
    return ", ".join(parts)


def _rule_init(space: dict[str, Dist], info: ModelInfo) -> str:
    space["init"] = Dist.choice("kaiming", "default", "xavier", "orthogonal")
    msg = "init joins the space (kaiming first)"
    if "depth" in space:
        d = space["depth"]
        assert d.low is not None and d.high is not None
        new_hi = max(int(d.low), int(d.high) - 1)
        space["depth"] = Dist.integer(int(d.low), new_hi)
        msg += f" and depth's maximum drops to {new_hi}"
    return msg


def _rule_width(space: dict[str, Dist], info: ModelInfo) -> str:
    if "width" not in space:
        return (
            "the model is not a factory taking width=, so width cannot be searched; "
            "consider compress() instead"
        )
    d = space["width"]
    assert d.low is not None and d.high is not None
    new_hi = max(int(d.low), math.floor(d.high / 2))
    space["width"] = Dist.integer(int(d.low), new_hi, log=d.log)
    return f"width's maximum is halved to {new_hi} (fewer FLOPs per layer)"


def _rule_plateau(space: dict[str, Dist], info: ModelInfo) -> str:
    space["lr_schedule"] = Dist.choice("cosine", "onecycle")
    space["warmup_fraction"] = REMEDIES["warmup_fraction"].default
    return "lr_schedule is restricted to cosine/onecycle and warmup_fraction joins"


_RULES = {
    "unstable": _rule_unstable,
    "lr_too_low": _rule_lr_low,
    "overfitting": _rule_overfit,
    "init": _rule_init,
    "width": _rule_width,
    "plateau": _rule_plateau,
}
_RULE_OF: dict[str, str] = {
    "exploding_gradients": "unstable",
    "lr_too_high": "unstable",
    "non_finite": "unstable",
    "lr_too_low": "lr_too_low",
    "overfitting": "overfitting",
    "vanishing_gradients": "init",
    "dead_units": "init",
    "compute_bound": "width",
    "memory_bound": "width",
    "latency_slo": "width",
    "plateau": "plateau",
}
