"""Structured pruning (units really removed) and unstructured magnitude pruning for ``compress``.

Structured pruning finds, in a ``torch.fx`` trace of the model, every ``Linear`` or
``Conv2d`` (``groups=1``) whose output reaches only other ``Linear``/``Conv2d`` inputs
through per-unit operations (activations, dropout, batch norm, pooling, ``flatten``). Those
units can be removed: the producer loses output rows, a following batch norm loses
channels, each consumer loses the matching input columns (``flatten`` maps a channel to
its ``H*W`` block of features). Anything else on the way (an addition, a concatenation,
``view``/``reshape``, the model output) makes the layer unprunable, so residual blocks keep
their widths. The pruned model is a copy of the user's module with smaller layers: same
class, same ``forward``.

This module imports torch at import time; ``tunelens.tune.compress`` imports it lazily.
"""

from __future__ import annotations

import copy
import io
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.nn import functional as nnf

__all__ = [
    "PruneGroup",
    "find_groups",
    "load_packed",
    "magnitude_masks",
    "pack_model",
    "prune_structured",
    "unit_importance",
]

_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.ELU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Hardswish,
    nn.Hardtanh,
    nn.Mish,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Identity,
)
_POOLS: tuple[type[nn.Module], ...] = (
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
_FUNCS: set[Callable[..., Any]] = {
    nnf.relu,
    torch.relu,
    nnf.relu6,
    nnf.leaky_relu,
    nnf.gelu,
    nnf.silu,
    nnf.elu,
    torch.tanh,
    torch.sigmoid,
    nnf.hardswish,
    nnf.dropout,
}
_POOL_FUNCS: set[Callable[..., Any]] = {
    nnf.max_pool2d,
    nnf.avg_pool2d,
    nnf.adaptive_avg_pool2d,
    nnf.adaptive_max_pool2d,
}
_METHODS: set[str] = {"relu", "sigmoid", "tanh", "contiguous"}


@dataclass
class PruneGroup:
    """One prunable layer: its units, the batch norms that follow and the layers it feeds.

    Attributes:
        producer: qualified name of the ``Linear``/``Conv2d`` whose outputs are the units.
        units: number of output units (features or channels).
        norms: qualified names of batch norms over those units.
        consumers: ``(name, factor)`` per consumer; ``factor`` is how many input features of
            a ``Linear`` one channel becomes after ``flatten`` (1 otherwise).
    """

    producer: str
    units: int
    norms: list[str] = field(default_factory=list)
    consumers: list[tuple[str, int]] = field(default_factory=list)


class _UnprunableError(Exception):
    pass


def _prod(xs: Iterable[int]) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out


def _shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return tuple(int(s) for s in shape) if shape is not None else None


def _first_arg_is(node: fx.Node, src: fx.Node) -> bool:
    return bool(node.args) and node.args[0] is src


def _walk(
    node: fx.Node,
    layout: str,
    factor: int,
    modules: dict[str, nn.Module],
    group: PruneGroup,
) -> None:
    """Follow every use of ``node``; raise :class:`_UnprunableError` on anything not per-unit."""
    if not node.users:
        raise _UnprunableError("unused output")
    for user in node.users:
        if not _first_arg_is(user, node) or any(a is node for a in user.args[1:]):
            raise _UnprunableError(f"{user.name} uses it as a non-first argument")
        if user.op == "call_module":
            mod = modules[str(user.target)]
            name = str(user.target)
            if isinstance(mod, nn.Linear):
                if layout != "last":
                    raise _UnprunableError("Linear over a non-feature dimension")
                group.consumers.append((name, factor))
            elif isinstance(mod, nn.Conv2d) and mod.groups == 1:
                if layout != "ch1" or factor != 1:
                    raise _UnprunableError("Conv2d after a non-channel layout")
                group.consumers.append((name, 1))
            elif isinstance(mod, nn.BatchNorm1d | nn.BatchNorm2d):
                shape = _shape(user)
                if isinstance(mod, nn.BatchNorm1d) and (layout != "last" or shape is None):
                    raise _UnprunableError("BatchNorm1d over a non-feature dimension")
                if isinstance(mod, nn.BatchNorm1d) and shape is not None and len(shape) != 2:
                    raise _UnprunableError("BatchNorm1d over a 3-D input")
                if isinstance(mod, nn.BatchNorm2d) and layout != "ch1":
                    raise _UnprunableError("BatchNorm2d over a non-channel layout")
                group.norms.append(name)
                _walk(user, layout, factor, modules, group)
            elif isinstance(mod, _ACTIVATIONS):
                _walk(user, layout, factor, modules, group)
            elif isinstance(mod, _POOLS):
                if layout != "ch1":
                    raise _UnprunableError("pooling over a non-channel layout")
                _walk(user, layout, factor, modules, group)
            elif isinstance(mod, nn.Flatten):
                _walk_flatten(
                    user, node, layout, factor, modules, group, mod.start_dim, mod.end_dim
                )
            else:
                raise _UnprunableError(f"feeds {type(mod).__name__}")
        elif user.op == "call_function":
            if user.target in _FUNCS:
                _walk(user, layout, factor, modules, group)
            elif user.target in _POOL_FUNCS:
                if layout != "ch1":
                    raise _UnprunableError("pooling over a non-channel layout")
                _walk(user, layout, factor, modules, group)
            elif user.target is torch.flatten:
                start = user.args[1] if len(user.args) > 1 else user.kwargs.get("start_dim", 0)
                end = user.args[2] if len(user.args) > 2 else user.kwargs.get("end_dim", -1)
                _walk_flatten(user, node, layout, factor, modules, group, start, end)
            else:
                raise _UnprunableError(f"feeds {getattr(user.target, '__name__', user.target)}")
        elif user.op == "call_method":
            if user.target in _METHODS:
                _walk(user, layout, factor, modules, group)
            elif user.target == "flatten":
                start = user.args[1] if len(user.args) > 1 else user.kwargs.get("start_dim", 0)
                end = user.args[2] if len(user.args) > 2 else user.kwargs.get("end_dim", -1)
                _walk_flatten(user, node, layout, factor, modules, group, start, end)
            else:
                raise _UnprunableError(f"feeds .{user.target}()")
        elif user.op == "output":
            raise _UnprunableError("its units are the model's outputs")
        else:
            raise _UnprunableError(f"reaches {user.op}")


def _walk_flatten(
    user: fx.Node,
    src: fx.Node,
    layout: str,
    factor: int,
    modules: dict[str, nn.Module],
    group: PruneGroup,
    start: Any,
    end: Any,
) -> None:
    shape = _shape(src)
    if (
        layout != "ch1"
        or shape is None
        or len(shape) < 2
        or start != 1
        or end not in (-1, len(shape) - 1)
    ):
        if layout == "last" and shape is not None and len(shape) == 2 and start == 1:
            _walk(user, layout, factor, modules, group)  # flatten of (N, F) is a no-op
            return
        raise _UnprunableError("flatten other than (N, C, ...) -> (N, C*...)")
    _walk(user, "last", factor * _prod(shape[2:]), modules, group)


def find_groups(model: nn.Module, example: torch.Tensor) -> tuple[list[PruneGroup], list[str]]:
    """The prunable layers of ``model``, and why each other layer is not prunable.

    Args:
        model: the module; traced with ``torch.fx.symbolic_trace``.
        example: an input batch, for the shapes ``flatten`` needs.

    Returns:
        ``(groups, notes)``; ``groups`` is empty (and ``notes`` says why) when the model
        cannot be traced.
    """
    try:
        gm = fx.symbolic_trace(model)
        ShapeProp(gm).propagate(example)
    except Exception as exc:  # tracing user code can fail in many ways
        return [], [f"torch.fx cannot trace the model ({type(exc).__name__}: {exc})"]
    modules = dict(gm.named_modules())
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    groups: list[PruneGroup] = []
    notes: list[str] = []
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        name = str(node.target)
        mod = modules[name]
        if isinstance(mod, nn.Linear):
            units, layout = mod.out_features, "last"
        elif isinstance(mod, nn.Conv2d) and mod.groups == 1:
            units, layout = mod.out_channels, "ch1"
        else:
            continue
        if calls[name] > 1:
            notes.append(f"{name}: called more than once")
            continue
        group = PruneGroup(name, int(units))
        try:
            _walk(node, layout, 1, modules, group)
        except _UnprunableError as why:
            notes.append(f"{name}: {why}")
            continue
        if any(calls.get(c, 0) > 1 for c, _ in group.consumers) or any(
            calls.get(n, 0) > 1 for n in group.norms
        ):
            notes.append(f"{name}: feeds a module called more than once")
            continue
        groups.append(group)
    return groups, notes


def _get(model: nn.Module, name: str) -> Any:
    return model.get_submodule(name)


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _in_index(keep: torch.Tensor, factor: int) -> torch.Tensor:
    if factor == 1:
        return keep
    offsets = torch.arange(factor)
    return (keep[:, None] * factor + offsets[None, :]).reshape(-1)


def unit_importance(model: nn.Module, group: PruneGroup) -> torch.Tensor:
    """Importance of each unit: L2 norm of what enters it times L2 norm of what leaves it.

    The incoming norm covers the producer's weight row and bias, scaled by a following batch
    norm's ``|gamma| / sqrt(var + eps)``; the outgoing norm covers every consumer's input
    columns for the unit. A unit with no incoming weights (and no bias) or no outgoing
    weights scores 0, and removing it leaves the outputs unchanged for activations with
    ``f(0) = 0``.
    """
    with torch.no_grad():
        prod = _get(model, group.producer)
        w = prod.weight.detach().reshape(group.units, -1)
        sq = (w**2).sum(1)
        bias = getattr(prod, "bias", None)
        if bias is not None:
            sq = sq + bias.detach() ** 2
        inn = sq.sqrt()
        for name in group.norms:
            bn = _get(model, name)
            assert isinstance(bn, nn.modules.batchnorm._BatchNorm)
            assert bn.running_var is not None
            scale = torch.ones(group.units) if bn.weight is None else bn.weight.detach().abs()
            inn = inn * scale / (bn.running_var + bn.eps).sqrt()
        out = torch.zeros(group.units)
        for name, factor in group.consumers:
            cons = _get(model, name)
            cw = cons.weight.detach()
            cols = cw.transpose(0, 1).reshape(group.units, factor, -1) if factor > 1 else None
            if cols is not None:
                out = out + (cols**2).sum((1, 2))
            else:
                out = out + (cw.transpose(0, 1).reshape(group.units, -1) ** 2).sum(1)
        result: torch.Tensor = inn * out.sqrt()
        return result


def _sliced_linear(
    mod: nn.Linear, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None
) -> nn.Linear:
    w = mod.weight.detach()
    b = mod.bias.detach() if mod.bias is not None else None
    if out_idx is not None:
        w = w[out_idx]
        b = b[out_idx] if b is not None else None
    if in_idx is not None:
        w = w[:, in_idx]
    new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            assert new.bias is not None
            new.bias.copy_(b)
    return new


def _sliced_conv(
    mod: nn.Conv2d, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None
) -> nn.Conv2d:
    w = mod.weight.detach()
    b = mod.bias.detach() if mod.bias is not None else None
    if out_idx is not None:
        w = w[out_idx]
        b = b[out_idx] if b is not None else None
    if in_idx is not None:
        w = w[:, in_idx]
    new = nn.Conv2d(
        w.shape[1],
        w.shape[0],
        mod.kernel_size,  # type: ignore[arg-type]
        stride=mod.stride,  # type: ignore[arg-type]
        padding=mod.padding,  # type: ignore[arg-type]
        dilation=mod.dilation,  # type: ignore[arg-type]
        bias=b is not None,
        padding_mode=mod.padding_mode,
        dtype=w.dtype,
    )
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            assert new.bias is not None
            new.bias.copy_(b)
    return new


def _sliced_norm(mod: nn.Module, idx: torch.Tensor) -> nn.Module:
    assert isinstance(mod, nn.modules.batchnorm._BatchNorm)
    new = copy.deepcopy(mod)
    new.num_features = len(idx)
    with torch.no_grad():
        if mod.weight is not None:
            new.weight = nn.Parameter(mod.weight.detach()[idx].clone())
        if mod.bias is not None:
            new.bias = nn.Parameter(mod.bias.detach()[idx].clone())
        if mod.running_mean is not None:
            new.running_mean = mod.running_mean[idx].clone()
        if mod.running_var is not None:
            new.running_var = mod.running_var[idx].clone()
    return new


def prune_structured(
    model: nn.Module,
    groups: list[PruneGroup],
    ratio: float,
    *,
    keep: dict[str, torch.Tensor] | None = None,
) -> nn.Module:
    """A copy of ``model`` with ``ratio`` of each group's units removed (lowest importance).

    Args:
        model: the module (left untouched).
        groups: from :func:`find_groups`.
        ratio: share of units removed per group, in ``[0, 1)``; at least one unit stays.
        keep: explicit unit indices to keep per producer name (overrides ``ratio``).

    Returns:
        The smaller module, in the mode ``model`` was in.
    """
    out_keep: dict[str, torch.Tensor] = {}
    in_keep: dict[str, torch.Tensor] = {}
    norm_keep: dict[str, torch.Tensor] = {}
    for g in groups:
        if keep is not None and g.producer in keep:
            idx = torch.sort(keep[g.producer]).values
        else:
            n_keep = max(1, math.ceil(g.units * (1.0 - ratio)))
            if n_keep >= g.units:
                continue
            score = unit_importance(model, g)
            idx = torch.sort(torch.topk(score, n_keep, sorted=False).indices).values
        out_keep[g.producer] = idx
        for n in g.norms:
            norm_keep[n] = idx
        for c, factor in g.consumers:
            in_keep[c] = _in_index(idx, factor)
    new = copy.deepcopy(model)
    for name in set(out_keep) | set(in_keep):
        mod = _get(model, name)
        o, i = out_keep.get(name), in_keep.get(name)
        if isinstance(mod, nn.Linear):
            _set(new, name, _sliced_linear(mod, o, i))
        else:
            assert isinstance(mod, nn.Conv2d)
            _set(new, name, _sliced_conv(mod, o, i))
    for name, idx in norm_keep.items():
        _set(new, name, _sliced_norm(_get(model, name), idx))
    new.train(model.training)
    return new


# ---- unstructured -------------------------------------------------------------------------


def magnitude_masks(model: nn.Module, sparsity: float) -> dict[str, torch.Tensor]:
    """Per-layer magnitude masks: the smallest ``sparsity`` share of each Linear/Conv weight.

    Returns:
        parameter name (``"layer.weight"``) -> boolean mask, ``True`` where a weight stays.
    """
    masks: dict[str, torch.Tensor] = {}
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d):
            w = mod.weight.detach().abs().reshape(-1)
            k = round(w.numel() * sparsity)
            if k <= 0:
                continue
            threshold = torch.kthvalue(w, k).values
            mask = (mod.weight.detach().abs() > threshold).reshape(mod.weight.shape)
            masks[f"{name}.weight" if name else "weight"] = mask
    return masks


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero the masked-out weights in place."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].mul_(mask)


_PACK_FORMAT = "tunelens.packed/1"


def pack_model(model: nn.Module, values: str = "float32") -> bytes:
    """Serialise ``model`` with sparse weights stored as a bit mask plus the non-zero values.

    Tensors at least 30 % zeros are stored as ``np.packbits(mask)`` and their non-zero
    values, as float32 or (``values="int8"``) int8 with one float32 scale per output row;
    other tensors are stored dense. The module's structure is pickled with its tensors on
    the ``meta`` device (no data). :func:`load_packed` reverses it.

    Args:
        model: the module.
        values: ``"float32"`` (lossless) or ``"int8"`` (per-row symmetric quantisation).

    Returns:
        The bytes ``torch.save`` writes.
    """
    dense: dict[str, torch.Tensor] = {}
    sparse: dict[str, dict[str, Any]] = {}
    for name, t in model.state_dict().items():
        t = t.detach()
        if t.is_floating_point() and t.numel() >= 64 and t.dim() >= 2:
            a = t.to(torch.float32).numpy()
            mask = a != 0
            if mask.mean() <= 0.7:
                rows = a.reshape(a.shape[0], -1)
                mrows = mask.reshape(a.shape[0], -1)
                entry: dict[str, Any] = {
                    "shape": tuple(a.shape),
                    "dtype": str(t.dtype),
                    "mask": torch.from_numpy(np.packbits(mask.reshape(-1))),
                }
                if values == "int8":
                    scale = np.abs(rows).max(1) / 127.0
                    scale[scale == 0] = 1.0
                    q = np.round(rows / scale[:, None]).astype(np.int8)
                    entry["values"] = torch.from_numpy(q[mrows].copy())
                    entry["scale"] = torch.from_numpy(scale.astype(np.float32))
                else:
                    entry["values"] = torch.from_numpy(rows[mrows].copy())
                sparse[name] = entry
                continue
        dense[name] = t
    skeleton = copy.deepcopy(model).to("meta")
    buf = io.BytesIO()
    torch.save(
        {"format": _PACK_FORMAT, "skeleton": skeleton, "dense": dense, "sparse": sparse}, buf
    )
    return buf.getvalue()


def load_packed(data: bytes) -> nn.Module:
    """Rebuild a module written by :func:`pack_model` (dense, on the CPU)."""
    obj = torch.load(io.BytesIO(data), weights_only=False)
    if not isinstance(obj, dict) or obj.get("format") != _PACK_FORMAT:
        raise ValueError("not a tunelens packed model")
    model: nn.Module = obj["skeleton"].to_empty(device="cpu")
    state: dict[str, torch.Tensor] = dict(obj["dense"])
    for name, entry in obj["sparse"].items():
        shape = tuple(entry["shape"])
        n = _prod(shape)
        mask = np.unpackbits(entry["mask"].numpy())[:n].astype(bool).reshape(shape[0], -1)
        rows = np.zeros(mask.shape, dtype=np.float32)
        vals = entry["values"].numpy()
        if "scale" in entry:
            row_of = np.nonzero(mask)[0]
            rows[mask] = vals.astype(np.float32) * entry["scale"].numpy()[row_of]
        else:
            rows[mask] = vals
        dtype = getattr(torch, entry["dtype"].removeprefix("torch."))
        state[name] = torch.from_numpy(rows.reshape(shape)).to(dtype)
    model.load_state_dict(state)
    return model
