"""tunelens.tune.torch_train: every sampled remedy reaches the training loop.

Each test runs the real loop (``task.objective`` on an ``optuna.trial.FixedTrial`` or a
study) and observes the optimizer, the batches and the model through the task's hooks.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
optuna = pytest.importorskip("optuna")

from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from tunelens.errors import InputError  # noqa: E402
from tunelens.tune.models import MLP, SmallCNN, apply_init  # noqa: E402
from tunelens.tune.remedies import REMEDIES, REMEDY_NAMES  # noqa: E402
from tunelens.tune.spaces import Dist  # noqa: E402
from tunelens.tune.torch_train import RunLog, TorchTask, torch_task  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Any:
    # tiny models: intra-op threads only add contention on a shared CI machine (10x here)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32), y.astype(np.int64)


@pytest.fixture(scope="module")
def small(digits: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    # 600 rows: 480 train (8 batches of 64, the last one of 32), 120 validation
    return digits[0][:600], digits[1][:600]


def _space(**dists: Dist | None) -> dict[str, Dist]:
    return {k: (d if d is not None else REMEDIES[k].default) for k, d in dists.items()}


def _task(data: Any, space: dict[str, Dist], *, model: Any = None, **kw: Any) -> TorchTask:
    model = model if model is not None else functools.partial(MLP, 64, 10, width=32, depth=1)
    kw.setdefault("epochs", 1)
    return torch_task(model, data=data, space=space, **kw)


def _run(task: TorchTask, params: dict[str, Any], number: int = 0) -> RunLog:
    trial = optuna.trial.FixedTrial(params, number=number)
    value = task.objective(trial)
    log = task.last_log
    assert log is not None and value == log.best_value
    assert trial.user_attrs["tunelens.epochs"] == log.epochs_run
    return log


def _steps(task: TorchTask) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    task._on_step = lambda e: events.append({k: v for k, v in e.items() if k != "model"})
    return events


def _batches(task: TorchTask) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    task._on_batch = events.append
    return events


# ---- optimizer remedies ----------------------------------------------------------------------


def test_lr_and_weight_decay_reach_adamw(small: Any) -> None:
    task = _task(small, _space(lr=None, weight_decay=None), epochs=2)
    steps = _steps(task)
    log = _run(task, {"lr": 0.0123, "weight_decay": 0.0042})
    assert len(steps) == log.optimizer_steps == 16
    assert all(s["lr"] == pytest.approx(0.0123) for s in steps)  # constant when not searched
    assert all(s["weight_decay"] == pytest.approx(0.0042) for s in steps)


@pytest.mark.parametrize("schedule", ["constant", "step", "cosine"])
def test_lr_schedule_with_warmup_has_the_right_shape(small: Any, schedule: str) -> None:
    lr, total, warm = 0.01, 16, 4  # 2 epochs x 8 steps; warm-up 0.25 of them
    task = _task(
        small, _space(lr=None, lr_schedule=None, warmup_fraction=Dist.real(0, 0.5)), epochs=2
    )
    log = _run(task, {"lr": lr, "lr_schedule": schedule, "warmup_fraction": 0.25})
    lrs = log.lrs
    assert len(lrs) == total
    # linear warm-up: lr * (k + 1) / warm
    assert lrs[:warm] == pytest.approx([lr * (k + 1) / warm for k in range(warm)])
    after = lrs[warm:]
    if schedule == "constant":
        assert after == pytest.approx([lr] * (total - warm))
    elif schedule == "step":
        # x0.1 at half the post-warm-up steps, x0.01 at three quarters
        assert after[0] == pytest.approx(lr) and after[5] == pytest.approx(lr)
        assert after[6] == pytest.approx(0.1 * lr) and after[8] == pytest.approx(0.1 * lr)
        assert after[9] == pytest.approx(0.01 * lr) and after[-1] == pytest.approx(0.01 * lr)
    else:
        want = [lr * 0.5 * (1 + math.cos(math.pi * k / (total - warm))) for k in range(12)]
        assert after == pytest.approx(want)
        assert after[6] == pytest.approx(lr / 2)


def test_onecycle_schedule_peaks_at_the_warmup_end(small: Any) -> None:
    lr = 0.01
    task = _task(
        small, _space(lr=None, lr_schedule=None, warmup_fraction=Dist.real(0, 0.5)), epochs=2
    )
    log = _run(task, {"lr": lr, "lr_schedule": "onecycle", "warmup_fraction": 0.25})
    lrs = np.array(log.lrs)
    assert lrs[0] == pytest.approx(lr / 25)  # OneCycleLR starts at max_lr / div_factor
    assert int(np.argmax(lrs)) == 3 and lrs.max() == pytest.approx(lr)  # 0.25 * 16 - 1
    assert np.all(np.diff(lrs[:4]) > 0) and np.all(np.diff(lrs[3:]) < 0)
    assert lrs[-1] < lr / 100


def test_grad_clip_norm_bounds_the_gradient(small: Any) -> None:
    task = _task(small, _space(lr=Dist.real(0.1, 1.0), grad_clip_norm=Dist.real(0.001, 10)))
    steps = _steps(task)
    _run(task, {"lr": 0.5, "grad_clip_norm": 0.01})
    assert steps and all(s["grad_norm"] <= 0.01 * (1 + 1e-4) for s in steps)
    clipped = [s for s in steps if s["grad_norm_before_clip"] > 0.01]
    assert len(clipped) == len(steps)  # the raw gradients are larger, so every step is clipped
    assert all(s["grad_norm"] == pytest.approx(0.01, rel=1e-3) for s in clipped)


@pytest.mark.parametrize(("accum", "steps_per_epoch"), [(1, 8), (3, 3), (8, 1)])
def test_grad_accumulation_sets_optimizer_steps(
    small: Any, accum: int, steps_per_epoch: int
) -> None:
    task = _task(small, _space(grad_accumulation=None), epochs=2)
    steps = _steps(task)
    log = _run(task, {"grad_accumulation": accum})
    assert log.batches_per_epoch == 8
    assert log.optimizer_steps == 2 * math.ceil(8 / accum) == 2 * steps_per_epoch
    assert sum(s["batches"] for s in steps) == 16  # every batch belongs to one step


@pytest.mark.parametrize("batch_size", [32, 128])
def test_batch_size_reaches_the_dataloader(small: Any, batch_size: int) -> None:
    task = _task(small, _space(batch_size=None))
    batches = _batches(task)
    log = _run(task, {"batch_size": batch_size})
    assert log.batch_size == batch_size
    assert log.batches_per_epoch == math.ceil(480 / batch_size) == len(batches)
    assert batches[0]["x"].shape[0] == batch_size
    assert sum(b["x"].shape[0] for b in batches) == 480


# ---- augmentation ----------------------------------------------------------------------------


def test_noise_std_is_in_units_of_feature_std(small: Any) -> None:
    X = small[0].copy()
    X[:, 5] *= 20.0  # one feature on a much larger scale
    task = _task((X, small[1]), _space(noise_std=None), epochs=2)
    batches = _batches(task)
    _run(task, {"noise_std": 0.2})
    std = task.data.feature_std
    assert std is not None
    z = torch.cat([(b["x"] - b["raw"]) / std for b in batches])
    assert z.shape[0] == 960
    assert float(z.mean()) == pytest.approx(0.0, abs=0.01)
    assert float(z.std()) == pytest.approx(0.2, rel=0.03)
    assert float(z[:, 5].std()) == pytest.approx(0.2, rel=0.1)  # scaled per feature
    raw_noise = torch.cat([b["x"] - b["raw"] for b in batches])
    assert float(raw_noise[:, 5].std()) > 10 * float(raw_noise[:, 20].std())


def test_noise_off_when_zero(small: Any) -> None:
    task = _task(small, _space(noise_std=None))
    batches = _batches(task)
    _run(task, {"noise_std": 0.0})
    assert all(torch.equal(b["x"], b["raw"]) for b in batches)


def test_mixup_mixes_inputs_with_beta_lambda(small: Any) -> None:
    task = _task(small, _space(mixup_alpha=None), epochs=8)
    batches = _batches(task)
    _run(task, {"mixup_alpha": 0.4})
    lams = np.array([b["lam"] for b in batches])
    assert len(lams) == 64 and np.all((lams > 0) & (lams < 1))
    # Beta(0.4, 0.4): mean 0.5, variance 1 / (4 (2a + 1)) = 0.139
    assert lams.mean() == pytest.approx(0.5, abs=0.1)
    assert lams.var() == pytest.approx(1 / (4 * 1.8), rel=0.35)
    for b in batches[:5]:
        want = b["lam"] * b["raw"] + (1 - b["lam"]) * b["raw"][b["perm"]]
        assert torch.allclose(b["x"], want, atol=1e-6)
        assert not torch.equal(b["x"], b["raw"])
    task2 = _task(small, _space(mixup_alpha=None))
    off = _batches(task2)
    _run(task2, {"mixup_alpha": 0.0})
    assert all(b["lam"] == 1.0 and b["perm"] is None for b in off)


@pytest.fixture(scope="module")
def images() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.random((400, 1, 8, 8), dtype=np.float32)
    y = (X[:, 0, :, :4].mean(axis=(1, 2)) > X[:, 0, :, 4:].mean(axis=(1, 2))).astype(np.int64)
    return X, y


@pytest.mark.parametrize("s", [1.0, 0.5])
def test_image_augment_strength(images: Any, s: float) -> None:
    cnn = functools.partial(SmallCNN, 1, 2, image_size=8, width=4, depth=1)
    task = _task(images, _space(image_augment=None), model=cnn, epochs=3)
    batches = _batches(task)
    _run(task, {"image_augment": s})
    flips = torch.cat([b["flipped"] for b in batches]).float()
    assert flips.numel() == 960
    assert float(flips.mean()) == pytest.approx(0.5 * s, abs=0.05)
    assert all(b["pad"] == round(4 * s) for b in batches)
    offs = torch.cat([b["offsets"] for b in batches])
    assert int(offs.abs().max()) == round(4 * s)  # crops reach the full padding
    ang = torch.cat([b["angles"] for b in batches])
    assert float(ang.abs().max()) <= 15 * s and float(ang.abs().max()) > 12 * s
    diff = torch.cat([(b["x"] - b["raw"]).abs().flatten(1).mean(1) for b in batches])
    assert float((diff > 1e-3).float().mean()) > 0.9  # augmented inputs differ from raw


def test_image_augment_flip_only_is_exact() -> None:
    from tunelens.tune.torch_train import _augment_images

    x = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).reshape(2, 1, 3, 3)
    info: dict[str, Any] = {}
    g = torch.Generator().manual_seed(1)
    out = _augment_images(x, 0.1, g, info)  # pad round(0.4) = 0; rotation <= 1.5 degrees
    assert info["pad"] == 0 and "offsets" not in info
    for i in range(2):
        base = x[i].flip(-1) if bool(info["flipped"][i]) else x[i]
        assert torch.allclose(out[i, :, 1, 1], base[:, 1, 1], atol=1e-4)  # the centre stays


def test_image_remedies_are_rejected_for_tabular_data(small: Any) -> None:
    with pytest.raises(InputError) as e:
        _task(small, _space(image_augment=None))
    assert e.value.field == "space['image_augment']"


# ---- model remedies --------------------------------------------------------------------------


def _first_linear_weights(task: TorchTask) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []

    def on_step(e: dict[str, Any]) -> None:
        if e["step"] == 0:  # before the first update: the initial weights
            seen.extend(
                m.weight.detach().clone() for m in e["model"].modules() if isinstance(m, nn.Linear)
            )

    task._on_step = on_step
    return seen


@pytest.mark.parametrize("route", ["factory_kwarg", "applied"])
def test_init_schemes_set_weight_statistics(small: Any, route: str) -> None:
    if route == "factory_kwarg":
        model: Any = functools.partial(MLP, 64, 10, width=256, depth=1)
    else:  # a factory without init=: the loop applies the scheme itself

        def model() -> nn.Module:
            return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))

    stds = {}
    for scheme in ("default", "kaiming", "xavier", "orthogonal"):
        task = _task(small, _space(init=None), model=model)
        seen = _first_linear_weights(task)
        _run(task, {"init": scheme})
        w = seen[0]  # (256, 64)
        stds[scheme] = float(w.std())
        if scheme == "orthogonal":
            # 256 x 64: columns orthonormal
            assert torch.allclose(w.T @ w, torch.eye(64), atol=1e-4)
    assert stds["kaiming"] == pytest.approx(math.sqrt(2 / 64), rel=0.05)
    assert stds["xavier"] == pytest.approx(math.sqrt(2 / (64 + 256)), rel=0.05)
    assert stds["default"] == pytest.approx(1 / math.sqrt(3 * 64), rel=0.05)  # U(+-1/sqrt(fan_in))
    assert stds["orthogonal"] == pytest.approx(1 / math.sqrt(256), rel=0.05)


@pytest.mark.parametrize(("width", "depth"), [(16, 1), (40, 3)])
def test_width_and_depth_shape_the_factory_model(small: Any, width: int, depth: int) -> None:
    task = _task(small, _space(width=None, depth=None), model=functools.partial(MLP, 64, 10))
    log = _run(task, {"width": width, "depth": depth})
    assert log.model is not None
    shapes = [tuple(m.weight.shape) for m in log.model.modules() if isinstance(m, nn.Linear)]
    assert shapes == [(width, 64)] + [(width, width)] * (depth - 1) + [(10, width)]


def test_width_and_depth_shape_the_cnn(images: Any) -> None:
    cnn = functools.partial(SmallCNN, 1, 2, image_size=8)
    task = _task(images, {"width": Dist.integer(4, 64), "depth": Dist.integer(1, 3)}, model=cnn)
    log = _run(task, {"width": 4, "depth": 3})
    assert log.model is not None
    convs = [tuple(m.weight.shape) for m in log.model.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [(4, 1, 3, 3), (8, 4, 3, 3), (16, 8, 3, 3)]


def test_dropout_reaches_factory_and_instance(small: Any) -> None:
    task = _task(small, _space(dropout=None), model=functools.partial(MLP, 64, 10, depth=3))
    log = _run(task, {"dropout": 0.37})
    assert log.model is not None
    ps = [m.p for m in log.model.modules() if isinstance(m, nn.Dropout)]
    assert ps == [pytest.approx(0.37)] * 3

    instance = MLP(64, 10, depth=2, dropout=0.0)
    task = _task(small, _space(dropout=None), model=instance)
    seen: list[float] = []
    task._on_step = lambda e: seen.extend(
        m.p for m in e["model"].modules() if isinstance(m, nn.Dropout)
    )
    _run(task, {"dropout": 0.21})
    assert seen and set(seen) == {0.21}  # the model trained with it
    assert [m.p for m in instance.modules() if isinstance(m, nn.Dropout)] == [0.0, 0.0]


def test_freeze_layers_keeps_exactly_those_parameters(small: Any) -> None:
    torch.manual_seed(0)
    pretrained = MLP(64, 10, width=32, depth=3)
    before = {k: v.clone() for k, v in pretrained.state_dict().items()}
    task = _task(small, _space(freeze_layers=Dist.integer(0, 3), lr=None), model=pretrained)
    assert task.info.freezable_layers == 3  # four Linear layers; the head always trains
    log = _run(task, {"freeze_layers": 2, "lr": 0.01})
    assert log.frozen == ["0.weight", "0.bias", "3.weight", "3.bias"]
    after = log.model.state_dict()  # type: ignore[union-attr]
    for k in before:
        unchanged = torch.equal(before[k], after[k])
        assert unchanged == (k in log.frozen), k
    assert all(torch.equal(v, pretrained.state_dict()[k]) for k, v in before.items())


def test_freeze_layers_range_is_checked(small: Any) -> None:
    with pytest.raises(InputError, match=r"within \[0, 3\]"):
        _task(small, _space(freeze_layers=Dist.integer(0, 5)), model=MLP(64, 10, depth=3))
    with pytest.raises(InputError) as e:
        _task(small, _space(freeze_layers=Dist.integer(0, 1)))  # a factory
    assert e.value.field == "space['freeze_layers']"


# ---- epochs, early stopping, pruning ---------------------------------------------------------


def test_early_stopping_stops_at_the_right_epoch(small: Any) -> None:
    curve = [0.5, 0.6, 0.7, 0.65, 0.66, 0.69, 0.7, 0.8, 0.9, 0.95]
    task = _task(small, _space(early_stopping_patience=None), epochs=10)
    task._on_epoch = lambda epoch, value: curve[epoch - 1]
    trial = optuna.trial.FixedTrial({"early_stopping_patience": 3})
    assert task.objective(trial) == 0.7  # the best epoch's value
    log = task.last_log
    assert log is not None
    assert log.epochs_run == 6 and log.best_epoch == 3 and log.stopped == "early_stopping"
    assert log.val_history == curve[:6]
    assert trial.user_attrs["tunelens.epochs"] == 6
    # a later improvement within patience keeps training
    task._on_epoch = lambda epoch, value: curve[epoch - 1]
    log = _run(task, {"early_stopping_patience": 5})
    assert log.epochs_run == 10 and log.best_value == 0.95 and log.stopped == "completed"


class _AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study: Any, trial: Any) -> bool:
        return True


def test_pruning_raises_and_records_compute(small: Any) -> None:
    task = _task(small, _space(lr=None), epochs=5)
    study = optuna.create_study(direction="maximize", pruner=_AlwaysPrune())
    study.enqueue_trial({"lr": 1e-3})
    study.optimize(task.objective, n_trials=1)
    t = study.trials[0]
    assert t.state == optuna.trial.TrialState.PRUNED
    assert t.user_attrs["tunelens.epochs"] == 1
    assert t.intermediate_values.keys() == {1}
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned):
        task.objective(trial)


# ---- measurements, metrics, data forms -------------------------------------------------------


def test_measurements_and_repeatability(small: Any) -> None:
    task = _task(small, _space(lr=None, dropout=None), latency_batch=4)
    t1 = optuna.trial.FixedTrial({"lr": 3e-3, "dropout": 0.1}, number=7)
    t2 = optuna.trial.FixedTrial({"lr": 3e-3, "dropout": 0.1}, number=7)
    assert task.objective(t1) == task.objective(t2)
    m = {
        k.split(":", 1)[1]: v for k, v in t1.user_attrs.items() if k.startswith("tunelens.measure")
    }
    assert set(m) == {
        "latency_p50_ms",
        "latency_p99_ms",
        "model_bytes",
        "flops",
        "peak_memory_bytes",
    }
    n_params = 64 * 32 + 32 + 32 * 10 + 10
    assert m["model_bytes"] == 4 * n_params
    assert m["flops"] == 2 * 4 * (64 * 32 + 32 * 10)  # 4 rows, multiply-add = 2
    assert 0 < m["latency_p50_ms"] <= m["latency_p99_ms"]
    assert m["peak_memory_bytes"] > m["model_bytes"]
    model = task.fit_best({"lr": 3e-3, "dropout": 0.1}, number=7)
    assert not model.training
    X_va = task.data.X_va
    assert X_va is not None and task.data.y_va is not None
    with torch.inference_mode():
        acc = float((model(X_va).argmax(1) == task.data.y_va).float().mean())
    assert acc == pytest.approx(task.last_log.best_value)  # type: ignore[union-attr]


def test_metrics_and_regression(small: Any) -> None:
    X, y = small
    f1 = torch_task(
        functools.partial(MLP, 64, 10),
        data=(X, y),
        space={"lr": Dist.real(1e-3, 1e-2)},
        metric="log_loss",
        epochs=2,
    )
    assert not f1.higher_is_better
    assert 0 < f1.objective(optuna.trial.FixedTrial({"lr": 5e-3})) < math.log(10)
    rng = np.random.default_rng(0)
    Xr = rng.normal(size=(300, 5)).astype(np.float32)
    yr = (Xr @ np.array([1.0, -2.0, 0.5, 0.0, 3.0])).astype(np.float32)
    for metric, better in (("mse", False), ("mae", False), ("r2", True)):
        task = torch_task(
            functools.partial(MLP, 5, 1), data=(Xr, yr), space={"lr": Dist.real(1e-3, 1e-1)},
            metric=metric, epochs=15,
        )  # fmt: skip
        assert task.higher_is_better is better
        value = task.objective(optuna.trial.FixedTrial({"lr": 1e-2}))
        if metric == "r2":
            assert value > 0.9
        else:
            assert 0 <= value < (1.0 if metric == "mae" else 1.5)
    with pytest.raises(InputError, match="use one of"):
        torch_task(functools.partial(MLP, 5, 1), data=(Xr, yr), metric="accuracy")


def test_dataloaders_and_four_tuple(small: Any) -> None:
    X, y = torch.from_numpy(small[0]), torch.from_numpy(small[1])
    tr = DataLoader(TensorDataset(X[:480], y[:480]), batch_size=50, shuffle=True)
    va = DataLoader(TensorDataset(X[480:], y[480:]), batch_size=50)
    task = _task((tr, va), _space(lr=None, grad_accumulation=None))
    log = _run(task, {"lr": 3e-3, "grad_accumulation": 2})
    assert log.batch_size == 50 and log.batches_per_epoch == 10 and log.optimizer_steps == 5
    assert "batch_size" not in torch_task(functools.partial(MLP, 64, 10), data=(tr, va)).space
    with pytest.raises(InputError, match="DataLoaders") as e:
        _task((tr, va), _space(batch_size=None))
    assert e.value.field == "space['batch_size']"
    four = _task((X[:480], y[:480], X[480:], y[480:]), _space(lr=None))
    assert four.data.X_va is not None and four.data.X_va.shape[0] == 120


def test_input_errors(small: Any) -> None:
    with pytest.raises(InputError, match="use one of") as e:
        _task(small, {"learning_rate": Dist.real(1e-3, 1e-2)})
    assert e.value.field == "space['learning_rate']" and str(REMEDY_NAMES) in str(e.value)
    with pytest.raises(InputError) as e:
        _task(small, _space(width=None), model=MLP(64, 10))
    assert e.value.field == "space['width']" and "factory" in str(e.value)
    with pytest.raises(InputError) as e:
        _task(small, {"lr_schedule": Dist.choice("cosine", "exponential")})
    assert e.value.field == "space['lr_schedule']"
    with pytest.raises(InputError) as e:
        _task(small, _space(lr=None), model=functools.partial(MLP, 64, 3))
    assert e.value.field == "model" and "10 classes" in str(e.value)
    with pytest.raises(InputError) as e:
        torch_task(42, data=small)  # type: ignore[arg-type]
    assert e.value.field == "model"
    with pytest.raises(InputError) as e:
        torch_task(functools.partial(MLP, 64, 10), data=small[0])
    assert e.value.field == "data"


def test_auto_space_and_default_params(small: Any) -> None:
    task = torch_task(
        functools.partial(MLP, 64, 10), data=small, findings=[{"kind": "overfitting"}]
    )
    assert task.epochs == 20
    assert {"noise_std", "mixup_alpha", "early_stopping_patience", "width"} <= set(task.space)
    assert any(s.startswith("overfitting:") for s in task.explanation)
    assert set(task.default_params) == set(task.space)
    assert task.default_params["lr"] == 3e-3 and task.default_params["lr_schedule"] == "onecycle"
    for k, v in task.default_params.items():
        d = task.space[k]
        assert v in d.choices if d.kind == "categorical" else d.low <= v <= d.high  # type: ignore[operator]
    inst = torch_task(MLP(64, 10, depth=2), data=small)
    assert inst.space["freeze_layers"] == Dist.integer(0, 2) and "width" not in inst.space
    assert inst.default_params["freeze_layers"] == 0


def test_apply_init_unknown_scheme() -> None:
    with pytest.raises(InputError, match="use one of"):
        apply_init(nn.Linear(2, 2), "he")


def test_every_remedy_is_exercised_here() -> None:
    source = open(__file__).read()  # noqa: SIM115
    missing = [n for n in REMEDY_NAMES if f'"{n}"' not in source and f"{n}=" not in source]
    assert missing == []


def test_digits_study_end_to_end(digits: Any) -> None:
    task = torch_task(functools.partial(MLP, 64, 10), data=digits, epochs=5, seed=0)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    study.enqueue_trial(task.default_params)
    study.optimize(task.objective, n_trials=6)
    assert len(study.trials) == 6
    assert study.best_value > 0.9
    assert all(t.user_attrs["tunelens.epochs"] == 5 for t in study.trials)


def test_divergence_stops_and_keeps_the_best_epoch(small: Any) -> None:
    task = _task(small, _space(lr=None), epochs=4)

    def poison(b: dict[str, Any]) -> None:
        if b["epoch"] == 3:
            b["x"].fill_(float("nan"))

    task._on_batch = poison
    log = _run(task, {"lr": 3e-3})
    assert log.stopped == "diverged" and log.epochs_run == 3
    assert math.isfinite(log.best_value) and log.best_value == max(log.val_history)


def test_objective_runs_under_tune_with_constraints(small: Any) -> None:
    from tunelens.tune import Constraint, tune

    task = _task(small, _space(lr=None, width=None), model=functools.partial(MLP, 64, 10))
    result = tune(
        task.objective,
        metric=task.metric,
        constraints=[Constraint("model_bytes", "<=", 4 * 40_000)],
        n_trials=3,
        seed=0,
    )
    assert len(result.trials) == 3 and result.best is not None
    done = [t for t in result.trials if t["state"] == "COMPLETE"]
    assert done
    for t in done:
        w, m = t["params"]["width"], t["measurements"]
        assert m["model_bytes"] == 4 * (64 * w + w + w * w + w + 10 * w + 10)  # depth 2
        assert t["feasible"] == (m["model_bytes"] <= 160_000)


def test_non_numeric_choices_and_categorical_freeze_are_input_errors(small: Any) -> None:
    with pytest.raises(InputError) as err:
        _task(small, {"lr": Dist.choice("fast")})
    assert err.value.field == "space['lr']" and "numbers" in str(err.value)
    with pytest.raises(InputError) as err:
        _task(small, {"dropout": Dist.choice(0.1, 2.0)})
    assert "within" in str(err.value)
    assert _task(small, {"grad_clip_norm": Dist.choice(None, 1.0)}).space


def test_a_trial_that_trains_every_epoch_is_never_pruned(small: Any) -> None:
    task = _task(small, {"lr": Dist.real(1e-5, 1e-1, log=True)})  # one epoch per trial
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    study.optimize(task.objective, n_trials=8)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
