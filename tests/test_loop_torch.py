"""The closed loop with a PyTorch model: tuned by tunelens's training loop, compressed when
a size objective is broken, served and stored through `TorchClassifier`."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from tunelens.loop import Loop  # noqa: E402
from tunelens.monitor import Monitor  # noqa: E402
from tunelens.store import open_store  # noqa: E402
from tunelens.tune import MLP, Constraint, TorchClassifier, tune  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)
FEATURES = ["x0", "x1", "x2"]
CLASSES = ["no", "yes"]  # string labels, as a monitor logs them


def _frame(rng: np.random.Generator, n: int, w: np.ndarray) -> pd.DataFrame:
    X = rng.normal(size=(n, 3))
    frame = pd.DataFrame(X, columns=FEATURES)
    frame["y"] = np.where(X @ w + 0.3 * rng.normal(size=n) > 0, "yes", "no")
    return frame


def _serve(tmp_path: Path, champion_width: int) -> tuple[Monitor, TorchClassifier, pd.DataFrame]:
    rng = np.random.default_rng(0)
    reference = _frame(rng, 1500, np.array([2.0, 0.0, 0.5]))
    y = (reference["y"] == "yes").to_numpy().astype(int)
    X = reference[FEATURES].to_numpy(np.float32)
    trained = tune(
        MLP(3, 2, width=champion_width), data=(X, y), n_trials=1, epochs=8, seed=0, device="cpu"
    ).model
    champion = TorchClassifier(trained, CLASSES)
    recent = _frame(rng, 1500, np.array([0.0, 2.0, 0.5]))  # the concept shifts
    mon = Monitor("net", open_store(str(tmp_path / "t.duckdb")), resources=False)
    ids = [f"r{i}" for i in range(len(recent))]
    mon.log(ids, recent[FEATURES], champion.predict(recent[FEATURES]))
    mon.log_labels(ids, recent["y"].to_numpy())
    return mon, champion, reference


@pytest.mark.slow
def test_a_pytorch_model_is_retuned_promoted_and_stored(tmp_path: Path) -> None:
    mon, champion, reference = _serve(tmp_path, champion_width=32)
    loop = Loop(
        mon,
        trainer=functools.partial(MLP, 3, 2),
        champion=champion.model,  # a bare module: the loop wraps it with the classes
        reference=reference,
        target="y",
        n_trials=3,
        epochs=6,
        device="cpu",
        policy="auto",
    )
    assert loop.classes == CLASSES
    run = loop.run()
    assert run.comparison["significant"] and run.promoted
    assert isinstance(run.model, TorchClassifier)
    fresh = _frame(np.random.default_rng(9), 500, np.array([0.0, 2.0, 0.5]))
    acc_old = float((champion.predict(fresh[FEATURES]) == fresh["y"]).mean())
    acc_new = float((run.model.predict(fresh[FEATURES]) == fresh["y"]).mean())
    assert acc_new > acc_old + 0.1
    stored = loop.registry.load_model(run.challenger)  # back from the store's bytes
    np.testing.assert_array_equal(
        stored.predict(fresh[FEATURES]), run.model.predict(fresh[FEATURES])
    )
    assert run.compress == {"applied": False, "why": "no latency or size objective is broken"}
    mon.close()
    mon.store.close()


@pytest.mark.slow
def test_a_broken_size_objective_sends_the_challenger_through_compress(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    mon, champion, reference = _serve(tmp_path, champion_width=256)
    float_bytes = 4 * sum(p.numel() for p in champion.model.parameters())
    bound = float_bytes // 2  # fine-tuned copies stay float: only compression can meet it
    loop = Loop(
        mon,
        trainer=champion.model,  # fine-tune copies of the serving module
        champion=champion,
        reference=reference,
        target="y",
        constraints=[Constraint("model_bytes", "<=", bound)],
        n_trials=2,
        epochs=6,
        device="cpu",
        policy="auto",
        compress_budget=15,
    )
    run = loop.run()
    assert run.tune["best"]["measurements"]["model_bytes"] > bound
    assert run.compress["applied"], run.compress
    assert run.compress["model_bytes"] <= bound and run.compress["feasible"]
    assert run.tune["feasible"]  # the compressed challenger meets the objective
    assert isinstance(run.model, TorchClassifier) and run.model.artefact
    stored = loop.registry.load_model(run.challenger)
    X = reference[FEATURES].iloc[:200]
    np.testing.assert_array_equal(stored.predict(X), run.model.predict(X))
    assert run.promoted == run.comparison["significant"]
    mon.close()
    mon.store.close()


def test_torch_trainer_needs_known_labels(tmp_path: Path) -> None:
    from tunelens.errors import InputError

    mon, champion, reference = _serve(tmp_path, champion_width=16)
    loop = Loop(
        mon,
        trainer=functools.partial(MLP, 3, 2),
        champion=champion,
        reference=reference,
        target="y",
        classes=["no", "maybe"],
        n_trials=1,
        device="cpu",
    )
    with pytest.raises(InputError) as err:
        loop.run()
    assert err.value.field == "classes"
    mon.close()
    mon.store.close()


@pytest.mark.slow
def test_a_broken_latency_objective_profiles_the_champion_layer_by_layer(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    mon, champion, reference = _serve(tmp_path, champion_width=64)
    loop = Loop(
        mon,
        trainer=functools.partial(MLP, 3, 2),
        champion=champion,
        reference=reference,
        target="y",
        constraints=[Constraint("latency_p99_ms", "<=", 1e-6)],  # nothing can meet it
        n_trials=1,
        epochs=2,
        device="cpu",
        policy="auto",
        compress_budget=5,
    )
    run = loop.run()
    kinds = {f["kind"] for f in run.localisation}
    assert "latency_slo" in kinds  # the measured p99 against the objective
    # the runtime profile's findings: where the time goes, by layer or by batching
    assert kinds & {"compute_bound", "memory_bound", "overhead_bound", "batching"}, kinds
    assert run.compress["chosen"] is not None and run.compress["why"]  # compress was tried
    assert not run.tune["feasible"] and not run.promoted  # never promoted past a constraint
    mon.close()
    mon.store.close()


def test_a_drop_runs_the_training_diagnostics_of_the_champion(tmp_path: Path) -> None:
    mon, champion, reference = _serve(tmp_path, champion_width=64)
    with torch.no_grad():  # most first-layer units of the serving model are dead
        first = champion.model[0]
        first.bias[:56] = -100.0
    loop = Loop(
        mon,
        trainer=functools.partial(MLP, 3, 2),
        champion=champion,
        reference=reference,
        target="y",
        n_trials=1,
        epochs=2,
        device="cpu",
    )
    run = loop.run()
    dead = [f for f in run.localisation if f["kind"] == "dead_units"]
    assert dead and dead[0]["where"].startswith("0"), run.localisation  # the first Linear
    # the finding reaches the plan: the space searches the initialisation
    assert "dead_units" in run.plan["remedies_from"]
    assert any("init" in line for line in run.plan["explanation"]), run.plan["explanation"]
    mon.close()
    mon.store.close()
