"""Bottleneck localisation (issue 5): where the time, FLOPs and memory go, what goes
wrong in training, and which inputs the model is sensitive to. Every answer is a ranked
`tunelens.findings.Finding` naming the remedy `tune` or `compress` can apply.

- `profile` (in :mod:`tunelens.diagnose.runtime`): per-layer time, FLOPs, parameters,
  memory and roofline class of a ``torch.nn.Module``, a batch-size sweep, findings;
- `count_flops` (in :mod:`tunelens.diagnose.flops`): forward FLOPs per module, attention
  included, with the operators no formula covers named;
- `profile_pipeline` (in :mod:`tunelens.diagnose.pipeline`): the time of each step of a
  scikit-learn pipeline across batch sizes, with findings;
- `watch` (in :mod:`tunelens.diagnose.training`): training diagnostics from inside the
  user's loop;
- `sensitivity` (in :mod:`tunelens.diagnose.sensitivity`): permutation importance,
  perturbation sensitivity, saliency, the worst rows and likely label errors.

PyTorch is optional: these names import without it and need it only when called on a
torch model.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    "profile": "tunelens.diagnose.runtime",
    "Profile": "tunelens.diagnose.runtime",
    "count_flops": "tunelens.diagnose.flops",
    "FlopCount": "tunelens.diagnose.flops",
    "watch": "tunelens.diagnose.training",
    "Watch": "tunelens.diagnose.training",
    "sensitivity": "tunelens.diagnose.sensitivity",
    "Sensitivity": "tunelens.diagnose.sensitivity",
    "profile_pipeline": "tunelens.diagnose.pipeline",
    "PipelineProfile": "tunelens.diagnose.pipeline",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tunelens.diagnose' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
