"""`TorchClassifier`: a PyTorch classifier (or its compressed form) behind ``predict``.

The closed loop (`tunelens.Loop`) treats every model alike: ``predict(X) -> labels``,
pickled into the store with its version. A trained ``nn.Module`` returns logits over
class indices; this wrapper maps them back to the labels the monitor logs, takes a
DataFrame or an array of feature rows, runs on the CPU in eval mode under ``no_grad``,
and pickles as the module's bytes (``torch.save``), or the compressed artefact's bytes
(`tunelens.tune.compress`: ``.onnx``, ``.packed.pt``, ``.pt``), so that a stored version
loads back as the model that was checked.

Example:
    >>> import pickle, torch
    >>> net = torch.nn.Linear(2, 2)
    >>> clf = TorchClassifier(net, ["benign", "malignant"])
    >>> pred = clf.predict([[0.5, -1.0], [2.0, 3.0]])
    >>> set(pred) <= {"benign", "malignant"}
    True
    >>> list(pickle.loads(pickle.dumps(clf)).predict([[0.5, -1.0], [2.0, 3.0]])) == list(pred)
    True
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from tunelens.errors import InputError

__all__ = ["TorchClassifier"]


class TorchClassifier:
    """``predict``/``predict_proba`` over a torch classifier's logits, picklable.

    Args:
        model: an ``nn.Module`` (moved to the CPU, eval mode) or a compressed model
            (callable on a float tensor batch, e.g. an ``OnnxModel``).
        classes: the labels of the output columns, in order (``classes[i]`` is the label
            of logit ``i``; with one output column, ``classes[1]`` is the label above 0).
        artefact: the compressed model's bytes (`CompressResult.artefact`), kept for
            pickling; empty for a plain module.
        suffix: the artefact's kind (`CompressResult.artefact_suffix`).

    Raises:
        InputError: fewer than two classes.
    """

    def __init__(
        self, model: Any, classes: Sequence[Any], *, artefact: bytes = b"", suffix: str = ".pt"
    ) -> None:
        if len(classes) < 2:
            raise InputError("classes", f"has {len(classes)} labels", "give at least two")
        import torch

        if isinstance(model, torch.nn.Module):
            model = model.to("cpu").eval()
        self.model = model
        self.classes_ = np.asarray(list(classes))
        self.artefact, self.suffix = bytes(artefact), suffix

    def _logits(self, X: Any) -> np.ndarray[Any, Any]:
        import torch

        rows = X.to_numpy() if hasattr(X, "to_numpy") else X
        x = torch.as_tensor(np.asarray(rows, dtype=np.float32))
        with torch.no_grad():
            out = self.model(x)
        logits: np.ndarray[Any, Any] = np.asarray(out.detach().float().cpu().numpy())
        return logits[:, None] if logits.ndim == 1 else logits

    def predict_proba(self, X: Any) -> np.ndarray[Any, Any]:
        """Class probabilities, one column per entry of ``classes_``."""
        z = self._logits(X)
        if z.shape[1] == 1:
            p = 1.0 / (1.0 + np.exp(-z[:, 0]))
            return np.column_stack([1.0 - p, p])
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        out: np.ndarray[Any, Any] = e / e.sum(axis=1, keepdims=True)
        return out

    def predict(self, X: Any) -> np.ndarray[Any, Any]:
        """The label of the largest logit (one column: ``classes_[1]`` above 0)."""
        z = self._logits(X)
        index = (z[:, 0] > 0).astype(int) if z.shape[1] == 1 else z.argmax(axis=1)
        out: np.ndarray[Any, Any] = self.classes_[index]
        return out

    # ---- pickling: the module's or the artefact's bytes -----------------------------------

    def __getstate__(self) -> dict[str, Any]:
        import torch

        data = self.artefact
        if not data:
            buffer = io.BytesIO()
            torch.save(self.model, buffer)
            data = buffer.getvalue()
        return {"classes": self.classes_.tolist(), "data": data, "suffix": self.suffix}

    def __setstate__(self, state: dict[str, Any]) -> None:
        from tunelens.tune._compress import load_compressed

        fd, path = tempfile.mkstemp(suffix="model" + state["suffix"])
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(state["data"])
            model = load_compressed(path)
        finally:
            os.unlink(path)
        self.__init__(  # type: ignore[misc]
            model,
            state["classes"],
            artefact=state["data"] if state["suffix"] != ".pt" else b"",
            suffix=state["suffix"],
        )
