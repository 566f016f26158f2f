"""Loading a model for `tunelens profile`, and telling what input it expects."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

from tunelens.errors import InputError

__all__ = ["check_input", "expected_input", "load_model", "parse_shape"]


def parse_shape(text: str, flag: str = "--input-shape") -> tuple[int, ...]:
    """``"1,3,224,224"`` -> ``(1, 3, 224, 224)``; every dimension a positive integer."""
    parts = [p.strip() for p in str(text).replace("x", ",").split(",") if p.strip()]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise InputError(flag, f"is {text!r}", "give positive integers: 1,3,224,224") from None
    if not shape or any(d <= 0 for d in shape):
        raise InputError(flag, f"is {text!r}", "give positive integers: 1,3,224,224")
    return shape


def load_model(spec: str) -> Any:
    """A ``torch.nn.Module`` from a TorchScript file (``.pt``/``.pth``/``.ts``), an
    exported program (``.pt2``, `torch.export`), or ``package.module:factory`` (an
    importable callable that returns the module, or a module attribute that is one).

    Raises:
        InputError: naming the file or the import path and what went wrong.
    """
    try:
        import torch
    except ImportError:
        raise InputError(
            "profile", "needs PyTorch", "pip install 'tunelens[torch]' (or torch)"
        ) from None
    path = Path(spec)
    if path.suffix in (".pt", ".pth", ".ts", ".pt2") or path.exists():
        if not path.exists():
            raise InputError(str(path), "no such file")
        if path.suffix == ".pt2":
            try:
                graph = torch.export.load(str(path)).module()
            except Exception as exc:
                raise InputError(str(path), f"is not an exported program: {_line(exc)}") from None
            # An exported graph is traced in one mode and refuses train()/eval(); the
            # profiler switches modes to count training FLOPs and restore the model, so
            # those calls become no-ops here (the graph keeps the mode it was traced in).
            import types

            def fixed_mode(self: Any, mode: bool = True) -> Any:
                return self

            def fixed_eval(self: Any) -> Any:
                return self

            graph.train = types.MethodType(fixed_mode, graph)  # type: ignore[method-assign]
            graph.eval = types.MethodType(fixed_eval, graph)  # type: ignore[method-assign]
            return graph
        try:
            return torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise InputError(
                str(path),
                f"is not a TorchScript file: {_line(exc)}",
                "save it with torch.jit.script(model).save(path), or give module:factory",
            ) from None
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise InputError(
            "MODEL",
            f"is {spec!r}",
            "give a TorchScript (.pt) or exported-program (.pt2) file, or package.module:factory",
        )
    if os.getcwd() not in sys.path:  # `tunelens profile mymodels:resnet` from a project dir
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise InputError("MODEL", f"cannot import {module_name!r}: {_line(exc)}") from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise InputError("MODEL", f"{module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    model = target if isinstance(target, torch.nn.Module) else None
    if model is None:
        if not callable(target):
            raise InputError("MODEL", f"{spec!r} is neither a module nor a factory")
        try:
            model = target()
        except Exception as exc:
            raise InputError("MODEL", f"{spec}() failed: {_line(exc)}") from None
    if not isinstance(model, torch.nn.Module):
        raise InputError("MODEL", f"{spec} gave a {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


def expected_input(model: Any) -> str | None:
    """What the first layer takes, when it tells (e.g. ``"(N, 3, H, W)"``)."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Conv1d):
            return f"(N, {module.in_channels}, L)"
        if isinstance(module, torch.nn.Conv2d):
            return f"(N, {module.in_channels}, H, W)"
        if isinstance(module, torch.nn.Conv3d):
            return f"(N, {module.in_channels}, D, H, W)"
        if isinstance(module, torch.nn.Linear):
            return f"(N, {module.in_features})"
        if isinstance(module, torch.nn.Embedding):
            return f"(N, L) integer ids below {module.num_embeddings}"
    return None


def check_input(model: Any, shape: tuple[int, ...]) -> Any:
    """A random input of ``shape`` that the model accepts, or `InputError` saying what it
    expects."""
    import torch

    example = torch.randn(*shape)
    try:
        with torch.no_grad():
            model(example)
    except Exception as exc:
        expected = expected_input(model)
        fix = f"the model expects {expected}" if expected else "give the shape the model takes"
        raise InputError(
            "--input-shape", f"{','.join(map(str, shape))} is refused: {_line(exc)}", fix
        ) from None
    return example


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
