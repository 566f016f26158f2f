"""Training diagnostics: faults injected into a small MLP on scikit-learn's digits."""

from __future__ import annotations

import importlib.util
import time
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from tunelens.diagnose.training import Watch, watch  # noqa: E402
from tunelens.findings import Finding  # noqa: E402

FAULTS = ["lr_high", "init", "dead", "lr_low", "overfit", "sigmoid", "nan"]
#: expected kind, expected layer (substring of `where`, None: any), latest acceptable step
EXPECT: dict[str, tuple[str, str | None, tuple[int, int]]] = {
    "lr_high": ("lr_too_high", None, (0, 20)),
    "init": ("exploding_gradients", "0", (0, 0)),
    "dead": ("dead_units", "2", (0, 10)),
    "lr_low": ("lr_too_low", None, (0, 20)),
    "overfit": ("overfitting", None, (0, 150)),
    "sigmoid": ("vanishing_gradients", "0", (0, 20)),
    "nan": ("non_finite", None, (150, 150)),
}
NAN_STEP = 150


def _data() -> tuple[Any, Any, Any, Any]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X - X.mean(0)) / (X.std(0) + 1e-6)
    idx = np.random.RandomState(0).permutation(len(X))
    as_x = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return (
        as_x(X[idx[:1400]]),
        torch.tensor(y[idx[:1400]]),
        as_x(X[idx[1400:]]),
        torch.tensor(y[idx[1400:]]),
    )


DATA = _data()


def _model(fault: str) -> Any:
    if fault == "sigmoid":
        layers: list[Any] = []
        d = 64
        for _ in range(8):
            layers += [nn.Linear(d, 32), nn.Sigmoid()]
            d = 32
        return nn.Sequential(*layers, nn.Linear(d, 10))
    width = 256 if fault == "overfit" else 64
    return nn.Sequential(
        nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)
    )


def train(fault: str, seed: int, steps: int = 300, every: int = 10) -> Watch:
    """SGD(lr=0.01, momentum=0.9), batch 32, validation loss every 10 steps."""
    Xtr, ytr, Xva, yva = DATA
    torch.manual_seed(seed)
    model = _model(fault)
    lr = 0.01 * (100 if fault == "lr_high" else 1) / (1000 if fault == "lr_low" else 1)
    with torch.no_grad():
        if fault == "init":
            for m in model:
                if isinstance(m, nn.Linear):
                    m.weight.mul_(100)
        if fault == "dead":
            model[2].bias.fill_(-100.0)
    if fault == "overfit":
        Xtr, ytr = Xtr[:50], ytr[:50]
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    gen = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    with watch(model, opt, every=every) as w:
        for t in range(steps):
            b = torch.randint(0, len(Xtr), (32,), generator=gen)
            xb = Xtr[b].clone()
            if fault == "nan" and t == NAN_STEP:
                xb[0, 3] = float("nan")
            opt.zero_grad()
            loss = loss_fn(model(xb), ytr[b])
            loss.backward()
            opt.step()
            val = None
            if t % 10 == 0:
                model.eval()
                with torch.no_grad():
                    val = float(loss_fn(model(Xva), yva))
                model.train()
            w.step(loss, val_loss=val)
    return w


def _hit(fault: str, findings: list[Finding]) -> Finding | None:
    kind, layer, (lo, hi) = EXPECT[fault]
    for f in findings:
        if f.kind != kind or f.step is None or not lo <= f.step <= hi:
            continue
        if layer is not None and layer not in f.where.replace(",", " ").split():
            continue
        return f
    return None


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_found_and_ranked_first(fault: str) -> None:
    findings = train(fault, seed=0).findings()
    assert _hit(fault, findings) is not None, findings
    assert findings[0].kind == EXPECT[fault][0], findings
    assert findings[0].action


def test_healthy_run_has_no_high_finding() -> None:
    w = train("healthy", seed=0)
    assert [f for f in w.findings() if f.severity == "high"] == []


def test_lr_high_says_cause_and_factor() -> None:
    findings = train("lr_high", seed=0).findings()
    assert findings[0].kind == "lr_too_high"
    assert "100x" in findings[0].action and "clip gradients at norm" in findings[0].action
    symptoms = [f for f in findings[1:] if f.kind in ("exploding_gradients", "dead_units")]
    assert all(f.severity != "high" for f in symptoms)


def test_lr_low_states_factor_and_overfit_states_stop() -> None:
    low = train("lr_low", seed=0).findings()[0]
    assert low.kind == "lr_too_low" and "raise the learning rate by about" in low.action
    over = next(f for f in train("overfit", seed=0).findings() if f.kind == "overfitting")
    assert "stop early" in over.action and "dropout" in over.action


def test_history_sampling_and_store(tmp_path: Any) -> None:
    class FakeStore:
        def __init__(self) -> None:
            self.blobs: dict[tuple[str, str], bytes] = {}

        def put_blob(self, model: str, kind: str, data: bytes) -> None:
            self.blobs[(model, kind)] = data

    store = FakeStore()
    model = _model("healthy")
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with watch(model, opt, every=5, store=store, run="mlp") as w:
        for _ in range(12):
            opt.zero_grad()
            loss = model(DATA[0][:16]).pow(2).mean()
            loss.backward()
            opt.step()
            w.step(loss)
        assert not w._hooks  # attached only for the forward pass of a sampled step
        assert w._snapshot is None
    h = w.history
    assert list(h["step"]) == list(range(12))
    assert h["grad_norm/0"].notna().tolist() == [t % 5 == 0 for t in range(12)]
    assert {"update_ratio/2", "act_zero/1", "dead_share/3", "act_std/4", "lr"} <= set(h.columns)
    assert h["lr"].iloc[0] == pytest.approx(0.01)
    assert ("mlp", "training") in store.blobs


def test_logdir_without_tensorboard_warns(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import tunelens.diagnose.training as tr

    real = importlib.import_module

    def no_tensorboard(name: str, *args: Any) -> Any:
        if name.startswith("tensorboard") or name == "torch.utils.tensorboard":
            raise ImportError(f"No module named {name!r}")
        return real(name, *args)

    monkeypatch.setattr(tr.importlib, "import_module", no_tensorboard)
    model = _model("healthy")
    with pytest.warns(UserWarning, match="tensorboard"), watch(model, logdir=str(tmp_path)) as w:
        w.step(1.0)
    assert list(tmp_path.iterdir()) == []


def test_logdir_writes_tensorboard_events(tmp_path: Any) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    X = torch.randn(128, 8)
    y = (X[:, 0] > 0).long()
    with watch(model, opt, every=5, logdir=str(tmp_path)) as w:
        for _ in range(20):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(X), y)
            loss.backward()
            w.step(loss)
            opt.step()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"train/loss", "train/lr", "grad_norm/0", "dead_share/1"} <= set(scalars)
    losses = [e.value for e in events.Scalars("train/loss")]
    assert len(losses) == 20
    assert losses[0] == pytest.approx(float(w.history["loss"].iloc[0]), rel=1e-5)
    assert events.Tags()["histograms"], "weight histograms are written on sampled steps"


def test_lightning_callback_guarded() -> None:
    import tunelens.diagnose.training as tr

    if importlib.util.find_spec("lightning") or importlib.util.find_spec("pytorch_lightning"):
        assert isinstance(tr.TunelensCallback, type)
    else:
        with pytest.raises(ImportError, match="lightning"):
            _ = tr.TunelensCallback


def test_every_must_be_positive() -> None:
    with pytest.raises(ValueError, match="every"):
        watch(_model("healthy"), every=0)


@pytest.mark.slow
def test_fault_matrix_three_seeds() -> None:
    """Recall >= 0.9, root cause first >= 0.8, <= 1 high finding over ten healthy runs."""
    table: dict[str, tuple[int, int]] = {}
    hits = firsts = runs = 0
    for fault in FAULTS:
        h = f1 = 0
        for seed in range(3):
            findings = train(fault, seed).findings()
            h += _hit(fault, findings) is not None
            f1 += bool(findings) and findings[0].kind == EXPECT[fault][0]
        table[fault] = (h, f1)
        hits, firsts, runs = hits + h, firsts + f1, runs + 3
    highs = sum(
        sum(f.severity == "high" for f in train("healthy", seed).findings()) for seed in range(10)
    )
    print("fault: found/3, ranked first/3", table, "healthy high findings:", highs)
    assert hits / runs >= 0.9
    assert firsts / runs >= 0.8
    assert highs <= 1


@pytest.mark.slow
def test_overhead_under_ten_percent() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10)
    )
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x, y = torch.randn(256, 512), torch.randint(0, 10, (256,))
    loss_fn = nn.CrossEntropyLoss()

    def loop(n: int, w: Watch | None) -> float:
        start = time.perf_counter()
        for _ in range(n):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            if w is not None:
                w.step(loss)
            else:
                float(loss.detach())  # a plain loop logs its loss too
        return time.perf_counter() - start

    loop(10, None)
    base, watched = [], []
    for _ in range(5):
        base.append(loop(40, None))
        with watch(model, opt, every=10) as w:
            watched.append(loop(40, w))
    overhead = min(watched) / min(base) - 1
    print(f"watch(every=10) overhead: {100 * overhead:.1f}%")
    assert overhead < 0.10


@pytest.mark.slow
def test_lightning_callback_finds_a_learning_rate_too_high() -> None:
    pl = pytest.importorskip("lightning.pytorch")
    import tunelens.diagnose.training as tr

    class Net(pl.LightningModule):  # type: ignore[misc]
        def __init__(self, lr: float) -> None:
            super().__init__()
            self.lr = lr
            self.net = torch.nn.Sequential(
                torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
            )

        def forward(self, x: Any) -> Any:
            return self.net(x)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            return torch.nn.functional.cross_entropy(self(x), y)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)

    from sklearn.datasets import load_digits

    digits = load_digits()
    X = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(X, y), batch_size=32, shuffle=True
    )
    results = {}
    for lr in (0.01, 1.0):
        torch.manual_seed(0)
        callback = tr.TunelensCallback(every=10)
        trainer = pl.Trainer(
            max_epochs=3,
            callbacks=[callback],
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
        )
        trainer.fit(Net(lr), loader)
        assert callback.watch is not None and len(callback.watch.history) > 100
        results[lr] = callback.watch.findings()
    assert not [f for f in results[0.01] if f.severity == "high"]
    assert results[1.0] and results[1.0][0].kind == "lr_too_high"
