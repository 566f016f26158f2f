"""Reference architectures as factories, so ``tune`` can search their width and depth.

They are plain functions: ``functools.partial(MLP, 64, 10)`` is a factory that
:func:`tunelens.tune.torch_train.torch_task` calls with sampled ``width``, ``depth``,
``dropout`` and ``init``. Every block carries an ``nn.Dropout`` (``p=0`` is the identity),
so a built model's dropout can also be changed later.

This module imports torch; import it only where torch is wanted.
"""

from __future__ import annotations

import torch
from torch import nn

from tunelens.errors import InputError

__all__ = ["INIT_SCHEMES", "MLP", "SmallCNN", "apply_init"]

#: the initialisation schemes :func:`apply_init` knows
INIT_SCHEMES: tuple[str, ...] = ("default", "kaiming", "xavier", "orthogonal")

_INIT_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def apply_init(module: nn.Module, scheme: str) -> nn.Module:
    """Re-initialise the weights of every Linear/Conv layer in ``module`` in place.

    ``"kaiming"``: He normal (fan-in, ReLU gain, std = sqrt(2 / fan_in)); ``"xavier"``:
    Glorot uniform (std = sqrt(2 / (fan_in + fan_out))); ``"orthogonal"``: orthogonal
    matrices (rows orthonormal); biases set to 0. ``"default"`` leaves the module as is.
    Layers whose weight does not require grad (frozen) are skipped.

    Args:
        module: the module to initialise.
        scheme: one of :data:`INIT_SCHEMES`.

    Returns:
        ``module`` itself.

    Raises:
        InputError: unknown scheme.

    Example:
        >>> layer = apply_init(nn.Linear(100, 50), "kaiming")
        >>> round(float(layer.weight.detach().std()), 1)
        0.1
    """
    if scheme not in INIT_SCHEMES:
        raise InputError("init", f"unknown scheme {scheme!r}", f"use one of {INIT_SCHEMES}")
    if scheme == "default":
        return module
    with torch.no_grad():
        for m in module.modules():
            if not isinstance(m, _INIT_TYPES) or not m.weight.requires_grad:
                continue
            if scheme == "kaiming":
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif scheme == "xavier":
                nn.init.xavier_uniform_(m.weight)
            else:
                nn.init.orthogonal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def _check_arch(width: int, depth: int, dropout: float) -> None:
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise InputError("width", f"must be a positive integer, got {width!r}", "")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise InputError("depth", f"must be a positive integer, got {depth!r}", "")
    if not 0.0 <= float(dropout) < 1.0:
        raise InputError("dropout", f"must be in [0, 1), got {dropout!r}", "")


def MLP(  # noqa: N802 - a factory that reads like a class
    in_features: int,
    out_features: int,
    *,
    width: int = 128,
    depth: int = 2,
    dropout: float = 0.0,
    init: str = "default",
) -> nn.Module:
    """A multilayer perceptron: ``depth`` blocks of Linear-ReLU-Dropout, then a Linear head.

    Args:
        in_features: input columns.
        out_features: outputs (classes for classification, targets for regression).
        width: hidden units of every block.
        depth: hidden layers (blocks).
        dropout: dropout probability after each hidden layer.
        init: weight initialisation, one of :data:`INIT_SCHEMES`.

    Returns:
        an ``nn.Sequential``.

    Raises:
        InputError: a non-positive width or depth, dropout outside [0, 1), unknown init.

    Example:
        >>> MLP(64, 10, width=32, depth=3)[-1]
        Linear(in_features=32, out_features=10, bias=True)
    """
    _check_arch(width, depth, dropout)
    layers: list[nn.Module] = []
    n_in = in_features
    for _ in range(depth):
        layers += [nn.Linear(n_in, width), nn.ReLU(), nn.Dropout(dropout)]
        n_in = width
    layers.append(nn.Linear(n_in, out_features))
    return apply_init(nn.Sequential(*layers), init)


class _SmallCNN(nn.Module):
    def __init__(self, features: nn.Sequential, head: nn.Sequential) -> None:
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x))
        return out


def SmallCNN(  # noqa: N802 - a factory that reads like a class
    in_channels: int,
    n_classes: int,
    *,
    image_size: int,
    width: int = 16,
    depth: int = 2,
    dropout: float = 0.0,
    init: str = "default",
) -> nn.Module:
    """A small CNN: ``depth`` conv-bn-relu-maxpool blocks, global average pool, linear head.

    Block ``i`` has ``width * 2**i`` channels (3x3 convolutions, padding 1); each block
    halves the spatial size with a 2x2 max-pool while the size is at least 2.

    Args:
        in_channels: input channels.
        n_classes: output logits.
        image_size: input height (= width) in pixels, used to stop pooling at 1x1.
        width: channels of the first block.
        depth: conv blocks.
        dropout: dropout probability before the head.
        init: weight initialisation, one of :data:`INIT_SCHEMES`.

    Returns:
        the model; ``model.features`` holds the blocks, ``model.head`` the pool and head.

    Raises:
        InputError: bad width, depth, dropout, image_size or init.

    Example:
        >>> m = SmallCNN(1, 10, image_size=8, width=4, depth=2)
        >>> m(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    _check_arch(width, depth, dropout)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise InputError("image_size", f"must be a positive integer, got {image_size!r}", "")
    blocks: list[nn.Module] = []
    c_in, size = in_channels, image_size
    for i in range(depth):
        c_out = width * 2**i
        block: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
        ]
        if size >= 2:
            block.append(nn.MaxPool2d(2))
            size //= 2
        blocks.append(nn.Sequential(*block))
        c_in = c_out
    head = nn.Sequential(
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in, n_classes)
    )
    return apply_init(_SmallCNN(nn.Sequential(*blocks), head), init)
