"""``tunelens.tune.compress``: pruning shapes and exactness, quantisation, the choice, bad input."""

from __future__ import annotations

import importlib.util
import json
import time
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from tunelens.errors import InputError  # noqa: E402
from tunelens.tune import Constraint  # noqa: E402
from tunelens.tune._compress import TIE_TOLERANCE, compress, load_compressed  # noqa: E402
from tunelens.tune._compress_prune import (  # noqa: E402
    apply_masks,
    find_groups,
    load_packed,
    magnitude_masks,
    pack_model,
    prune_structured,
)


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Any:
    """One torch thread: on a shared 2-core machine two threads per process oversubscribe."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _blobs(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three separable classes in 8 features, and a 9th feature that is always 0."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2.0, size=(3, 8))
    y = rng.integers(0, 3, size=n)
    X = centers[y] + rng.normal(0, 0.7, size=(n, 8))
    X = np.concatenate([X, np.zeros((n, 1))], axis=1).astype(np.float32)
    return X, y.astype(np.int64)


def _fit(model: nn.Module, X: np.ndarray, y: np.ndarray, steps: int = 150) -> nn.Module:
    torch.manual_seed(0)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for i in range(steps):
        idx = torch.arange(i * 64, i * 64 + 64) % len(Xt)
        loss = nn.functional.cross_entropy(model(Xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _mlp(width: int = 64) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(9, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 3)
    )


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, np.ndarray, np.ndarray]:
    X, y = _blobs()
    return _fit(_mlp(), X, y), X, y


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 2 * 2, 12),
        nn.ReLU(),
        nn.Linear(12, 4),
    ).eval()


# ---- structured pruning ---------------------------------------------------------------------


def test_structured_pruning_gives_the_expected_smaller_shapes() -> None:
    mlp = _mlp(64).eval()
    groups, notes = find_groups(mlp, torch.randn(2, 9))
    assert [g.producer for g in groups] == ["0", "2"]
    assert any(n.startswith("4:") for n in notes)  # the output layer keeps its width
    small = prune_structured(mlp, groups, 0.75)
    assert isinstance(small, nn.Sequential)
    assert (small[0].in_features, small[0].out_features) == (9, 16)
    assert (small[2].in_features, small[2].out_features) == (16, 16)
    assert (small[4].in_features, small[4].out_features) == (16, 3)
    assert mlp[0].out_features == 64  # the original is untouched

    cnn = _cnn()
    groups, _ = find_groups(cnn, torch.randn(2, 1, 8, 8))
    by_name = {g.producer: g for g in groups}
    assert set(by_name) == {"0", "4", "8"}
    assert by_name["0"].norms == ["1"]
    assert by_name["4"].consumers == [("8", 4)]  # one channel -> 2x2 flattened features
    small = prune_structured(cnn, groups, 0.5)
    assert small[0].out_channels == 4 and small[1].num_features == 4
    assert small[1].running_mean.shape == (4,)
    assert (small[4].in_channels, small[4].out_channels) == (4, 8)
    assert (small[8].in_features, small[8].out_features) == (8 * 4, 6)
    assert small[10].in_features == 6 and small[10].out_features == 4
    assert small(torch.randn(3, 1, 8, 8)).shape == (3, 4)


def test_pruning_zero_importance_units_keeps_outputs_equal() -> None:
    mlp = _mlp(32).eval()
    cnn = _cnn()
    with torch.no_grad():
        for layer in (mlp[0], mlp[2]):
            layer.weight[1::2] = 0  # every odd unit gets no input and no bias
            layer.bias[1::2] = 0
        cnn[1].weight[::2] = 0  # batch norm silences even channels of conv 0
        cnn[1].bias[::2] = 0
        cnn[4].weight[::2] = 0
        cnn[4].bias[::2] = 0
        cnn[8].weight[1::2] = 0
        cnn[8].bias[1::2] = 0
        cnn[1].running_mean.uniform_(-0.5, 0.5)
        cnn[1].running_var.uniform_(0.5, 2.0)
    for model, x in ((mlp, torch.randn(16, 9)), (cnn, torch.randn(16, 1, 8, 8))):
        groups, _ = find_groups(model, x[:2])
        small = prune_structured(model, groups, 0.5)
        n_before = sum(p.numel() for p in model.parameters())
        n_after = sum(p.numel() for p in small.parameters())
        assert n_after < 0.6 * n_before
        with torch.no_grad():
            torch.testing.assert_close(small(x), model(x), atol=1e-5, rtol=1e-5)
    # and the pruned units really are the zero ones
    groups, _ = find_groups(mlp, torch.randn(2, 9))
    small = prune_structured(mlp, groups, 0.5)
    torch.testing.assert_close(small[0].weight, mlp[0].weight[0::2])


def test_unprunable_graph_is_reported_not_pruned() -> None:
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(8, 8)
            self.b = nn.Linear(8, 8)
            self.head = nn.Linear(8, 2)

        def forward(self, x: Any) -> Any:
            h = torch.relu(self.a(x))
            return self.head(torch.relu(self.b(h)) + x)

    groups, notes = find_groups(Residual(), torch.randn(2, 8))
    assert [g.producer for g in groups] == ["a"]  # b feeds an addition
    assert any(n.startswith("b:") and "add" in n for n in notes)


def test_unstructured_packing_shrinks_the_file_and_round_trips() -> None:
    model = _mlp(128).eval()
    dense = len(pack_model(model))
    masks = magnitude_masks(model, 0.9)
    apply_masks(model, masks)
    zeros = float((model[2].weight == 0).float().mean())
    assert 0.89 <= zeros <= 0.91
    packed = pack_model(model)
    assert len(packed) < dense / 4
    back = load_packed(packed)
    for (n1, t1), (n2, t2) in zip(
        model.state_dict().items(), back.state_dict().items(), strict=True
    ):
        assert n1 == n2
        torch.testing.assert_close(t1, t2, atol=0, rtol=0)
    q = load_packed(pack_model(model, "int8"))
    assert torch.equal(q[2].weight == 0, model[2].weight == 0)
    torch.testing.assert_close(q[2].weight, model[2].weight, atol=0.01, rtol=0.02)


# ---- quantisation ---------------------------------------------------------------------------


def test_quantised_output_is_close_to_float(trained: Any) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from tunelens.tune._compress_ort import OnnxModel, export_onnx, quantize_onnx

    model, X, _ = trained
    x = torch.from_numpy(X[:64])
    onnx_bytes = export_onnx(model, x[:1])
    with torch.no_grad():
        ref = model(x)
    torch.testing.assert_close(OnnxModel(onnx_bytes)(x), ref, atol=1e-4, rtol=1e-4)
    for static in (False, True):
        q = quantize_onnx(onnx_bytes, static=static, calibration=[X[:64]])
        assert len(q) < 0.6 * len(onnx_bytes)
        out = OnnxModel(q)(x)
        err = float((out - ref).abs().max() / ref.abs().max())
        assert err < 0.05, f"static={static}: relative error {err}"
        assert float((out.argmax(1) == ref.argmax(1)).float().mean()) >= 0.95


def test_sensitivity_keeps_a_fragile_layer_in_float(trained: Any) -> None:
    model, X, y = trained
    fragile = type(model)(
        *[type(m)(m.in_features, m.out_features) if isinstance(m, nn.Linear) else m for m in model]
    )
    fragile.load_state_dict(model.state_dict())
    with torch.no_grad():
        # feature 8 is always 0: the float model is unchanged, but a per-tensor int8 scale
        # of 1000/127 rounds every other weight of layer 0 to zero
        fragile[0].weight[:, 8] = 1000.0
    fragile.eval()
    res = compress(
        fragile, data=(X, y), methods=("quantize_dynamic", "quantize_static"), max_drop=0.02
    )
    recs = {c["name"]: c for c in res.candidates}
    assert "original@onnxruntime" not in recs  # export alone was not asked for
    ort_rec = recs.get("original+int8-dynamic@onnxruntime")
    if importlib.util.find_spec("onnxruntime") is not None:
        assert ort_rec is not None
    torch_rec = recs["original+int8-dynamic@torch"]
    assert torch_rec["settings"]["kept_float"] == ["0"]
    assert torch_rec["settings"]["sensitivity"]["0"] > 0.2
    # kept in float, layer 0 costs no accuracy (torch's int8 kernels may still be slower
    # than float at batch 1, which makes the candidate ineligible, not inaccurate)
    assert torch_rec["drop"] <= 0.02, torch_rec["why_not"]
    if ort_rec is not None:
        kept = ort_rec["settings"]["kept_float"]
        assert len(kept) == 1 and kept[0].startswith("/0/"), kept
        assert ort_rec["settings"]["sensitivity"][kept[0]] > 0.2
        assert ort_rec["drop"] <= 0.02, ort_rec["why_not"]
        static = recs["original+int8-static@onnxruntime"]
        assert [k[:3] for k in static["settings"]["kept_float"]] == ["/0/"]
        assert static["drop"] <= 0.02, static["why_not"]
    assert res.improved and res.chosen is not None and res.chosen["drop"] <= 0.02


# ---- the search -----------------------------------------------------------------------------


def test_chosen_candidate_obeys_constraints_and_max_drop(trained: Any) -> None:
    model, X, y = trained
    base_bytes = len(pack_model(model))  # about torch.save of the module
    bound = base_bytes / 3
    res = compress(
        model,
        data=(X, y),
        methods=("prune", "unstructured"),
        max_drop=0.02,
        constraints=[Constraint("model_bytes", "<=", bound), Constraint("accuracy", ">=", 0.9)],
        finetune_epochs=2,
    )
    assert res.baseline["metric"] > 0.95
    assert res.improved and res.chosen is not None
    ch = res.chosen
    assert ch["feasible"] and ch["why_not"] == ""
    assert ch["drop"] <= 0.02 and ch["metric"] >= 0.9 and ch["model_bytes"] <= bound
    feasible = [c for c in res.candidates if c["feasible"]]
    fastest = min(c["latency_p50_ms"] for c in feasible)
    tied = [c for c in feasible if c["latency_p50_ms"] <= fastest * (1 + TIE_TOLERANCE)]
    assert ch["latency_p50_ms"] <= fastest * (1 + TIE_TOLERANCE)
    assert ch["model_bytes"] == min(c["model_bytes"] for c in tied)
    for c in res.candidates:
        if not c["feasible"]:
            assert c["why_not"]
        if c["metric"] is not None:
            assert c["speedup"] > 0 and c["size_ratio"] == pytest.approx(
                res.baseline["model_bytes"] / c["model_bytes"]
            )
    # the chosen model runs and scores what its record says
    xv = torch.from_numpy(X[:5])
    with torch.inference_mode():
        assert res.model(xv).shape == (5, 3)
    d = res.to_dict()
    assert d["schema"] == "tunelens.compress/1"
    json.dumps(d, allow_nan=False)
    assert "chosen:" in res.summary()


def test_impossible_constraint_returns_the_original_with_reasons(trained: Any) -> None:
    model, X, y = trained
    res = compress(
        model,
        data=(X, y),
        methods=("prune",),
        constraints=[Constraint("latency_p50_ms", "<=", 1e-9)],
        finetune_epochs=1,
    )
    assert not res.improved
    assert res.model is model
    assert res.chosen is not None and res.chosen["name"] == "original"
    assert "latency_p50_ms <= 1e-09" in res.chosen["why_not"]
    assert res.candidates
    for c in res.candidates:
        assert not c["feasible"] and "latency_p50_ms" in c["why_not"]
    assert "original" in res.summary()


def test_time_budget_is_respected(trained: Any) -> None:
    model, X, y = trained
    t = time.monotonic()
    res = compress(model, data=(X, y), time_budget=1.0, finetune_epochs=200)
    elapsed = time.monotonic() - t
    # the original is measured first (~1 s) and the candidate in flight is finished
    assert elapsed < 8.0
    assert any("time_budget" in n for n in res.notes)
    assert not any(c["name"].startswith("distill") for c in res.candidates)


def test_dataloader_data_works(trained: Any) -> None:
    from torch.utils.data import DataLoader, TensorDataset

    model, X, y = trained
    ds = TensorDataset(torch.from_numpy(X[:400]), torch.from_numpy(y[:400]))
    val = TensorDataset(torch.from_numpy(X[400:]), torch.from_numpy(y[400:]))
    res = compress(
        model,
        data=(DataLoader(ds, batch_size=32, shuffle=True), DataLoader(val, batch_size=50)),
        methods=("prune",),
        finetune_epochs=1,
        max_drop=0.05,
    )
    assert "loaders as given" in res.settings["data"]
    assert res.baseline["metric"] > 0.95
    assert next(c["name"] for c in res.candidates if c["runtime"] == "torch") == "prune-25%"
    assert all(c["metric"] is not None for c in res.candidates)


def test_regression_metric_counts_an_increase_as_the_drop() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 9)).astype(np.float32)
    y = (X[:, :3].sum(1) + 0.1 * rng.normal(size=400)).astype(np.float32)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(9, 32), nn.ReLU(), nn.Linear(32, 1), nn.Flatten(0))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(300):
        loss = nn.functional.mse_loss(model(Xt), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    res = compress(model, data=(X, y), metric="mse", methods=("prune",), finetune_epochs=1)
    assert res.baseline["metric"] < 0.1
    for c in res.candidates:
        assert c["drop"] == pytest.approx(c["metric"] - res.baseline["metric"])
        assert c["feasible"] == (c["drop"] <= 0.01)
    with pytest.raises(InputError) as info:
        compress(model, data=(X, y.astype(np.float32) + 0.5), metric="accuracy")
    assert info.value.field == "data[1] (y)" and "integer" in str(info.value)


def test_save_and_load_round_trip(trained: Any, tmp_path: Any) -> None:
    model, X, y = trained
    res = compress(model, data=(X, y), methods=("unstructured",), finetune_epochs=1, max_drop=0.05)
    assert res.improved and res.chosen is not None
    paths = res.save(tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert names == ["compress.json", "model.packed.pt"]
    assert (
        json.loads((tmp_path / "out" / "compress.json").read_text())["schema"]
        == "tunelens.compress/1"
    )
    assert (tmp_path / "out" / "model.packed.pt").stat().st_size == res.chosen["model_bytes"]
    back = load_compressed(tmp_path / "out" / "model.packed.pt")
    x = torch.from_numpy(X[:8])
    with torch.no_grad():
        torch.testing.assert_close(back(x), res.model(x))


# ---- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field", "mentions"),
    [
        ({"methods": ("prune", "svd")}, "methods", "quantize_dynamic"),
        ({"max_drop": -0.1}, "max_drop", ">= 0"),
        ({"metric": "auc"}, "metric", "accuracy"),
        (
            {"constraints": [Constraint("memory_mb", "<=", 1)]},
            "constraints[0].name",
            "latency_p50_ms",
        ),
        ({"time_budget": 0}, "time_budget", "> 0"),
        ({"latency_batch": 0}, "latency_batch", ">= 1"),
    ],
)
def test_bad_arguments_raise_input_error(
    trained: Any, kwargs: dict[str, Any], field: str, mentions: str
) -> None:
    model, X, y = trained
    with pytest.raises(InputError) as info:
        compress(model, data=(X, y), **kwargs)
    assert info.value.field == field
    assert mentions in str(info.value)


def test_bad_data_raises_input_error(trained: Any) -> None:
    model, X, y = trained
    with pytest.raises(InputError) as info:
        compress(model, data=(X, y[:-3]))
    assert info.value.field == "data" and "rows" in str(info.value)
    with pytest.raises(InputError) as info:
        compress(model, data=(X[:, :5], y))  # the model takes 9 features
    assert info.value.field == "data" and "(2, 5)" in str(info.value)
    with pytest.raises(InputError) as info:
        compress(model, data=X)
    assert info.value.field == "data" and "(X, y)" in str(info.value)
    with pytest.raises(InputError) as info:
        compress(model, data=(X, y.reshape(-1, 1).repeat(2, 1)))
    assert info.value.field == "data[1] (y)"
    with pytest.raises(InputError) as info:
        compress(model, data=(X, y + 5))  # 3 outputs, labels 5..7
    assert info.value.field == "data[1] (y)" and "0..2" in str(info.value)
    with pytest.raises(InputError) as info:
        compress("not a model", data=(X, y))  # type: ignore[arg-type]
    assert info.value.field == "model"


def test_torchscript_model_is_refused_with_input_error(trained: Any) -> None:
    import torch

    model, X, y = trained
    scripted = torch.jit.trace(model.eval(), torch.as_tensor(X[:2], dtype=torch.float32))
    with pytest.raises(InputError) as info:
        compress(scripted, data=(X, y))
    assert info.value.field == "model" and "TorchScript" in str(info.value)


def test_a_candidate_that_does_not_beat_the_original_is_not_chosen(trained: Any) -> None:
    model, X, y = trained
    res = compress(model, data=(X, y), methods=["unstructured"], finetune_epochs=1)
    for c in res.candidates:
        slower = c["speedup"] is not None and c["speedup"] < 1 / (1 + TIE_TOLERANCE)
        no_gain = c["speedup"] is not None and c["speedup"] <= 1 and c["size_ratio"] <= 1
        if slower or no_gain:
            assert not c["feasible"] and "original" in c["why_not"]
    if res.improved:
        assert res.chosen is not None
        assert res.chosen["speedup"] >= 1 / (1 + TIE_TOLERANCE)
        assert res.chosen["speedup"] > 1 or res.chosen["size_ratio"] > 1
