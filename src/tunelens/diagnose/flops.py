"""Forward FLOPs of a ``torch.nn.Module``, per module, with attention included.

The counting itself is `torch.utils.flop_counter.FlopCounterMode` (matrix products,
convolutions, attention kernels), so a multiply-add counts as two FLOPs, as in
DESIGN.md (ResNet-18 at 224x224, batch 1: about 3.63 GFLOPs). On top of it:

- formulas for the attention kernels the CPU build runs and PyTorch has none for
  (``aten._scaled_dot_product_flash_attention_for_cpu`` and its backward);
- the fused "fast path" of ``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer``
  (``aten._native_multi_head_attention``, ``aten._transformer_encoder_layer_fwd``) has no
  formula, so it is switched off while counting: the same arithmetic then runs as
  separate, counted operators;
- every operator that ran, had no formula and is not pure data movement (`ZERO_FLOP_OPS`)
  is named in `FlopCount.uncounted` with its call count, never silently counted as zero.
  Element-wise and normalisation operators (``relu``, ``add``, ``native_batch_norm``,
  ``_softmax`` ...) land there: like the published figures of model zoos, the headline
  counts the products, and the list says what else ran.

PyTorch is imported lazily: this module imports without it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ZERO_FLOP_OPS", "FlopCount", "count_flops", "normalise_inputs"]

#: ATen operators that only move, view, allocate or copy data (no arithmetic); they are
#: left out of `FlopCount.uncounted`. Names are ``aten.<op>`` without the overload.
ZERO_FLOP_OPS: frozenset[str] = frozenset(
    f"aten.{name}"
    for name in (  # noqa: SIM905
        "_reshape_alias _to_copy _unsafe_view alias as_strided cat chunk clone "
        "constant_pad_nd contiguous copy copy_ detach detach_ embedding empty empty_like "
        "empty_strided expand expand_as fill fill_ flatten full full_like index_select "
        "lift_fresh lift_fresh_copy narrow new_empty new_empty_strided new_full new_ones "
        "new_zeros ones ones_like permute repeat reshape resize_ select slice split "
        "split_with_sizes squeeze squeeze_ stack t to transpose unbind unflatten unsqueeze "
        "unsqueeze_ view zero_ zeros zeros_like arange scalar_tensor _local_scalar_dense "
        "gather masked_fill masked_fill_ index where _has_compatible_shallow_copy_type"
    ).split()
)


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one forward pass.

    Attributes:
        flops: forward FLOPs (a multiply-add counts 2).
        macs: ``flops / 2``, the "GFLOPS" that model zoos list.
        params: parameters, exact (each shared parameter once).
        by_module: FLOPs of each module including its children, keyed by the name in
            ``model.named_modules()`` (the model itself is ``""``), every module listed.
        self_by_module: FLOPs a module runs outside its children; these add up to `flops`.
        uncounted: operators that ran without a FLOP formula (not pure data movement),
            ``"aten.relu": calls``.
        backward_flops: FLOPs of the backward pass when counted with ``training=True``.
        training: whether it was counted in training mode (grad on, ``model.train()``).
    """

    flops: int
    macs: float
    params: int
    by_module: dict[str, int] = field(default_factory=dict)
    self_by_module: dict[str, int] = field(default_factory=dict)
    uncounted: dict[str, int] = field(default_factory=dict)
    backward_flops: int | None = None
    training: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary of all fields."""
        return {
            "flops": self.flops,
            "macs": self.macs,
            "params": self.params,
            "by_module": dict(self.by_module),
            "self_by_module": dict(self.self_by_module),
            "uncounted": dict(self.uncounted),
            "backward_flops": self.backward_flops,
            "training": self.training,
        }


def normalise_inputs(example_inputs: Any) -> tuple[Any, ...]:
    """A tensor, or a tuple/list of positional arguments, as a tuple of arguments."""
    if isinstance(example_inputs, tuple | list):
        return tuple(example_inputs)
    return (example_inputs,)


def _custom_formulas() -> dict[Any, Any]:
    import torch
    from torch.utils import flop_counter

    aten = torch.ops.aten
    out: dict[Any, Any] = {}

    def cpu_sdpa(
        query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any
    ) -> int:
        return int(flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape))  # type: ignore[no-untyped-call, unused-ignore]

    def cpu_sdpa_backward(
        grad_out_shape: Any,
        query_shape: Any,
        key_shape: Any,
        value_shape: Any,
        *args: Any,
        **kwargs: Any,
    ) -> int:
        return int(
            flop_counter.sdpa_backward_flop_count(  # type: ignore[no-untyped-call, unused-ignore]
                grad_out_shape, query_shape, key_shape, value_shape
            )
        )

    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        out[aten._scaled_dot_product_flash_attention_for_cpu] = cpu_sdpa
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        out[aten._scaled_dot_product_flash_attention_for_cpu_backward] = cpu_sdpa_backward
    return out


@contextlib.contextmanager
def _no_fastpath() -> Iterator[None]:
    import torch

    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):
        yield
        return
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(before)


@contextlib.contextmanager
def _preserved_state(model: Any, training: bool) -> Iterator[None]:
    """Put the model in train/eval mode and give back its mode and buffers afterwards
    (a training-mode pass moves batch-norm running statistics)."""
    import torch

    modes = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    model.train(training)
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode
        with torch.no_grad():
            for buf, saved in buffers:
                buf.copy_(saved)


def _seen_ops_mode() -> Any:
    from torch.utils._python_dispatch import TorchDispatchMode

    class _SeenOps(TorchDispatchMode):  # type: ignore[misc, no-untyped-call, unused-ignore]
        """Counts the ATen operators that actually execute (after decomposition)."""

        def __init__(self) -> None:
            super().__init__()  # type: ignore[no-untyped-call, unused-ignore]
            self.calls: dict[Any, int] = {}

        def __torch_dispatch__(
            self, func: Any, types: Any, args: Any = (), kwargs: Any = None
        ) -> Any:
            packet = func._overloadpacket
            self.calls[packet] = self.calls.get(packet, 0) + 1
            return func(*args, **(kwargs or {}))

    return _SeenOps()


def _tree_names(model: Any, counts: dict[str, dict[Any, int]]) -> dict[str, int]:
    """FlopCounterMode keys modules as ``RootClass.child.grandchild``; map them to
    ``named_modules`` names (root ``""``)."""
    names = {name for name, _ in model.named_modules()}
    root = type(model).__name__
    totals: dict[str, int] = dict.fromkeys(names, 0)
    for key, per_op in counts.items():
        if key == "Global":
            continue
        if key == root:
            name = ""
        elif key.startswith(root + "."):
            name = key[len(root) + 1 :]
        else:
            name = key
        totals[name] = totals.get(name, 0) + int(sum(per_op.values()))
    return totals


def _self_flops(model: Any, totals: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, module in model.named_modules():
        children = sum(
            totals.get(f"{name}.{child}" if name else child, 0)
            for child, _ in module.named_children()
        )
        out[name] = max(totals.get(name, 0) - children, 0)
    return out


def _output_tensors(out: Any) -> list[Any]:
    import torch
    from torch.utils._pytree import tree_leaves

    return [
        t
        for t in tree_leaves(out)
        if isinstance(t, torch.Tensor) and t.requires_grad and t.is_floating_point()
    ]


def count_flops(model: Any, example_inputs: Any, *, training: bool = False) -> FlopCount:
    """Forward FLOPs of ``model(*example_inputs)``, per module.

    Args:
        model: a ``torch.nn.Module``.
        example_inputs: a tensor or a tuple of positional arguments.
        training: count in training mode: ``model.train()``, grad on, and a backward
            pass of the sum of the outputs counted into `FlopCount.backward_flops`. The
            headline `flops` stays the forward pass. Mode and buffers (batch-norm
            statistics) are restored afterwards; parameter gradients are cleared.

    Returns:
        `FlopCount`.

    Example:
        >>> import torch
        >>> count_flops(torch.nn.Linear(4, 3), torch.randn(2, 4)).flops
        48
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    args = normalise_inputs(example_inputs)
    params = int(sum(p.numel() for p in model.parameters()))
    counter = FlopCounterMode(display=False, custom_mapping=_custom_formulas())
    seen = _seen_ops_mode()
    backward: int | None = None
    grad_ctx = torch.enable_grad() if training else torch.no_grad()
    with _preserved_state(model, training), _no_fastpath(), grad_ctx:
        with seen, counter:
            out = model(*args)
        if training:
            outputs = _output_tensors(out)
            if outputs:
                back = FlopCounterMode(display=False, custom_mapping=_custom_formulas())
                loss = sum(o.float().sum() for o in outputs)
                with back:
                    loss.backward()
                backward = int(back.get_total_flops())
                for p in model.parameters():
                    p.grad = None
    flops = int(counter.get_total_flops())
    totals = _tree_names(model, counter.get_flop_counts())
    registry = counter.flop_registry
    uncounted: dict[str, int] = {}
    for packet, calls in seen.calls.items():
        name = str(packet)
        if packet in registry or name in ZERO_FLOP_OPS or name.startswith("prim."):
            continue
        uncounted[name] = uncounted.get(name, 0) + calls
    return FlopCount(
        flops=flops,
        macs=flops / 2,
        params=params,
        by_module=totals,
        self_by_module=_self_flops(model, totals),
        uncounted=dict(sorted(uncounted.items())),
        backward_flops=backward,
        training=training,
    )
