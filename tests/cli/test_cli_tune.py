"""`tunelens tune CONFIG.toml` and `tunelens compress`: JSON and HTML out, exit 2 with one
line naming the key and the accepted values on a bad config, before any trial runs."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import optuna
import pytest

from tests.cli.conftest import Invoke

SKLEARN = """
[study]
name = "cli-iris"
n_trials = 4
seed = 0
[model]
kind = "sklearn"
estimator = "sklearn.linear_model.LogisticRegression"
params = {max_iter = 200}
[data]
dataset = "iris"
[space]
C = {low = 0.001, high = 10.0, log = true}
"""

MLP = """
[study]
name = "cli-mlp"
n_trials = 4
epochs = 3
seed = 0
[model]
kind = "mlp"
[data]
dataset = "digits"
[space]
lr = {low = 1e-3, high = 1e-2, log = true}
width = {low = 32, high = 64}
"""


def _write(tmp_path: Path, text: str, name: str = "cfg.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_tune_sklearn_writes_json_and_html(cli: Invoke, tmp_path: Path) -> None:
    config = _write(tmp_path, SKLEARN)
    out, page = tmp_path / "out" / "t.json", tmp_path / "t.html"
    result = cli("tune", config, "--json", out, "--html", page)
    assert result.code == 0, result.err
    doc = json.loads(out.read_text())
    assert doc["schema"] == "tunelens.tune/1"
    assert doc["study_name"] == "cli-iris"
    assert [t["number"] for t in doc["trials"]] == [0, 1, 2, 3]
    assert all(0.001 <= t["params"]["C"] <= 10.0 for t in doc["trials"])
    assert doc["best"]["value"] > 0.9  # logistic regression on iris: ~0.97
    html = page.read_text()
    assert html.lstrip().lower().startswith("<!doctype html") and "cli-iris" in html
    assert "recommended: trial #" in result.out and f"wrote {out}" in result.out


@pytest.mark.slow
def test_tune_mlp_end_to_end(cli: Invoke, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    config = _write(tmp_path, MLP)
    out, page = tmp_path / "m.json", tmp_path / "m.html"
    result = cli("tune", config, "--json", out, "--html", page)
    assert result.code == 0, result.err
    doc = json.loads(out.read_text())
    assert doc["schema"] == "tunelens.tune/1" and len(doc["trials"]) == 4
    complete = [t for t in doc["trials"] if t["state"] == "COMPLETE"]
    assert complete and max(t["value"] for t in complete) > 0.85
    assert all(32 <= t["params"]["width"] <= 64 for t in doc["trials"] if "width" in t["params"])
    assert page.stat().st_size > 10_000


def test_json_to_stdout_and_n_trials_override(cli: Invoke, tmp_path: Path) -> None:
    config = _write(tmp_path, SKLEARN)
    result = cli("tune", config, "--json", "-", "--n-trials", "2")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert len(doc["trials"]) == 2
    assert "recommended" in result.err  # the summary goes to stderr with --json -


def test_storage_keeps_the_study_for_optuna_dashboard(cli: Invoke, tmp_path: Path) -> None:
    config = _write(tmp_path, SKLEARN)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    result = cli("tune", config, "--storage", url, "--study", "kept", "--n-trials", "2")
    assert result.code == 0, result.err
    study = optuna.load_study(study_name="kept", storage=url)
    assert len(study.trials) == 2


BAD = [
    (
        "unknown remedy",
        MLP.replace("lr = {", "learning_rat = {"),
        "error: space.learning_rat: unknown remedy; use one of lr, lr_schedule,",
    ),
    (
        "inverted range",
        MLP.replace("lr = {low = 1e-3, high = 1e-2", "lr = {low = 0.1, high = 0.001"),
        "error: space.lr: inverted range low=0.1 > high=0.001; swap low and high",
    ),
    (
        "unknown metric",
        MLP + '[objective]\nmetric = "acc"\n',
        "error: objective.metric: unknown metric 'acc'; use one of accuracy, f1,",
    ),
    (
        "unknown table",
        MLP + "[modle]\nkind = 'mlp'\n",
        "error: modle: unknown top-level table; use one of space, study,",
    ),
    (
        "unknown key",
        MLP.replace("epochs = 3", "epoch = 3"),
        "error: study.epoch: unknown key; use one of name, storage, n_trials,",
    ),
    (
        "wrong type",
        MLP.replace("seed = 0", "seed = 1.5"),
        "error: study.seed: must be an integer, got a number",
    ),
    (
        "missing data file",
        SKLEARN.replace('dataset = "iris"', 'train = "gone.parquet"\ntarget = "y"'),
        "error: data.train: no such file 'gone.parquet'",
    ),
]


def test_a_rerun_with_storage_tops_the_study_up(cli: Invoke, tmp_path: Path) -> None:
    config = _write(tmp_path, SKLEARN)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    for n in ("2", "2", "3"):
        result = cli("tune", config, "--storage", url, "--n-trials", n)
        assert result.code == 0, result.err
    assert len(optuna.load_study(study_name="cli-iris", storage=url).trials) == 3


def test_no_trial_completing_exits_1_with_the_first_error(cli: Invoke, tmp_path: Path) -> None:
    # each value is valid on its own; together (l1 with the default lbfgs solver) every
    # fit fails
    config = _write(tmp_path, SKLEARN.replace("C = {", 'penalty = ["l1"]\nC = {'))
    result = cli("tune", config, "--n-trials", "2")
    assert result.code == 1
    assert "no trial completed" in result.err and "l1" in result.err


@pytest.mark.parametrize(("text", "line"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_config_exits_2_with_one_line(
    cli: Invoke, tmp_path: Path, text: str, line: str
) -> None:
    out = tmp_path / "never.json"
    result = cli("tune", _write(tmp_path, text), "--json", out)
    assert result.code == 2
    assert result.err.startswith(line), result.err
    assert result.err.count("\n") == 1
    assert not out.exists()


def test_missing_config_file(cli: Invoke, tmp_path: Path) -> None:
    result = cli("tune", tmp_path / "nope.toml")
    assert result.code == 2
    assert "nope.toml: no such config file" in result.err and result.err.count("\n") == 1


def test_workers_without_shared_storage_exit_2(cli: Invoke, tmp_path: Path) -> None:
    config = _write(tmp_path, SKLEARN)
    result = cli("tune", config, "--workers", "2")
    assert result.code == 2
    assert result.err.startswith("error: --workers 2: needs a shared storage; give --storage")
    memory = cli("tune", config, "--workers", "2", "--storage", "sqlite:///:memory:")
    assert memory.code == 2 and "needs a shared storage" in memory.err
    worker = cli("tune", config, "--worker")
    assert worker.code == 2 and worker.err.startswith("error: --worker: needs a shared storage")


@pytest.mark.slow
def test_two_workers_through_the_cli(cli: Invoke, tmp_path: Path) -> None:
    config = _write(tmp_path, SKLEARN.replace("n_trials = 4", "n_trials = 6"))
    url = f"sqlite:///{tmp_path / 'w.db'}"
    out = tmp_path / "w.json"
    result = cli("tune", config, "--storage", url, "--workers", "2", "--json", out)
    assert result.code == 0, result.err
    assert "2 workers finished 6 of 6 trials" in result.out
    doc = json.loads(out.read_text())
    assert sorted(t["number"] for t in doc["trials"]) == list(range(6))


DYING = textwrap.dedent(
    """
    import os
    import sys

    if "--worker" in sys.argv:  # only the worker processes die, not the test's process
        os._exit(3)


    def make(**kwargs):
        raise RuntimeError("never called in this test")
    """
)


def test_a_dying_worker_makes_exit_1(
    cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    (tmp_path / "tl_cli_dying.py").write_text(DYING)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = _write(
        tmp_path,
        '[study]\nn_trials = 4\n[model]\nkind = "factory"\nfactory = "tl_cli_dying:make"\n'
        '[data]\ndataset = "iris"\n',
    )
    out = tmp_path / "never.json"
    url = f"sqlite:///{tmp_path / 'd.db'}"
    result = cli("tune", config, "--storage", url, "--workers", "2", "--json", out)
    assert result.code == 1
    assert "worker 0 exited with code 3" in result.err
    assert "worker 1 exited with code 3" in result.err
    assert result.err.count("\n") == 1 and not out.exists()


# ---- compress --------------------------------------------------------------------------------


def test_compress_needs_config_or_model(cli: Invoke, tmp_path: Path) -> None:
    result = cli("compress")
    assert result.code == 2 and "give --config or --model" in result.err
    bad = cli("compress", "--config", _write(tmp_path, MLP), "--constraint", "latency<5")
    assert bad.code == 2
    assert bad.err.startswith("error: --constraint latency<5: not NAME<=BOUND or NAME>=BOUND")
    method = cli("compress", "--config", _write(tmp_path, MLP), "--methods", "zip")
    assert method.code == 2 and "unknown method 'zip'" in method.err


def test_compress_refuses_sklearn_config(cli: Invoke, tmp_path: Path) -> None:
    result = cli("compress", "--config", _write(tmp_path, SKLEARN))
    assert result.code == 2 and "compress needs a PyTorch model" in result.err


@pytest.mark.slow
def test_compress_from_config(cli: Invoke, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    config = _write(
        tmp_path,
        MLP.replace("epochs = 3", "epochs = 2")
        + '[compress]\nmethods = ["prune"]\nmax_drop = 0.02\ntime_budget = 30\n',
    )
    url = f"sqlite:///{tmp_path / 'study.db'}"
    tuned = cli("tune", config, "--storage", url, "--n-trials", "2")
    assert tuned.code == 0, tuned.err
    best = optuna.load_study(study_name="cli-mlp", storage=url).best_trial.number
    out, page = tmp_path / "c.json", tmp_path / "c.html"
    result = cli("compress", "--config", config, "--storage", url, "--json", out, "--html", page)
    assert result.code == 0, result.err
    assert f"trained the model with the params of trial #{best} of study 'cli-mlp'" in result.out
    doc = json.loads(out.read_text())
    assert doc["schema"] == "tunelens.compress/1"
    assert doc["settings"]["max_drop"] == 0.02 and doc["settings"]["methods"] == ["prune"]
    assert doc["candidates"] and all(c["method"] == "prune" for c in doc["candidates"])
    # fine-tuned on the config's training rows, measured on its validation rows (digits:
    # 1797 rows, 20% validation), never on rows the model was trained on
    assert "loaders as given" in doc["settings"]["data"], doc["settings"]["data"]
    assert "360 validation rows" in doc["settings"]["data"]
    assert page.exists()


FACTORY = textwrap.dedent(
    """
    import torch

    from tunelens.tune.models import MLP


    def make():
        torch.manual_seed(0)
        return MLP(4, 3, width=16, depth=1).eval()
    """
)


@pytest.mark.slow
def test_compress_model_from_a_factory(
    cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    (tmp_path / "tl_compress_models.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "c.json"
    result = cli(
        "compress",
        "--model",
        "tl_compress_models:make",
        "--data",
        "iris",
        "--methods",
        "quantize_dynamic",
        "--max-drop",
        "1.0",
        "--json",
        out,
    )
    assert result.code == 0, result.err
    doc = json.loads(out.read_text())
    assert doc["schema"] == "tunelens.compress/1" and doc["settings"]["max_drop"] == 1.0
    assert doc["candidates"]
    assert all(c["method"] == "quantize_dynamic" for c in doc["candidates"])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_compress_input_errors(cli: Invoke, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    result = cli("compress", "--model", "x:y")
    assert result.code == 2 and result.err.startswith("error: --data: missing")
    unknown = cli("compress", "--model", "x:y", "--data", "mnist")
    assert unknown.code == 2
    assert "'mnist' is neither a bundled dataset nor a file" in unknown.err
    path = tmp_path / "m.pt"
    torch.jit.script(torch.nn.Sequential(torch.nn.Linear(4, 3))).save(str(path))
    scripted = cli("compress", "--model", path, "--data", "iris")
    assert scripted.code == 2
    assert "a TorchScript model cannot be pruned" in scripted.err
    assert scripted.err.count("\n") == 1
