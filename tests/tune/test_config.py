"""The tune config (TOML): every key checked, every error naming the key and the accepted
values, data loaded and split as documented, models built from the data's shape."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from tunelens.errors import InputError
from tunelens.tune import Constraint, Dist
from tunelens.tune.config import (
    CLASSIFICATION_METRICS,
    load_config,
    load_dataset,
    parse_config,
)
from tunelens.tune.remedies import REMEDY_NAMES

optuna.logging.set_verbosity(optuna.logging.WARNING)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "tune"

SKLEARN = """
[study]
n_trials = 3
[model]
kind = "sklearn"
estimator = "sklearn.linear_model.LogisticRegression"
params = {max_iter = 300}
[data]
dataset = "iris"
"""

MLP = """
[study]
n_trials = 2
epochs = 2
[model]
kind = "mlp"
[data]
dataset = "digits"
"""


def _write(tmp_path: Path, text: str, name: str = "cfg.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _error(tmp_path: Path, text: str) -> InputError:
    with pytest.raises(InputError) as info:
        load_config(_write(tmp_path, text))
    return info.value


# ---- the shipped examples --------------------------------------------------------------------


def test_examples_parse_as_documented() -> None:
    mlp = load_config(EXAMPLES / "digits_mlp.toml")
    assert mlp.model.kind == "mlp" and mlp.model.args == {"depth": 2}
    assert mlp.study.n_trials == 8 and mlp.study.epochs == 5 and mlp.study.pruner == "asha"
    assert isinstance(mlp.space, dict)
    assert mlp.space["lr"] == Dist.real(3e-4, 3e-2, log=True)
    assert mlp.space["width"] == Dist.integer(32, 256, log=True)  # width is an integer remedy
    assert mlp.space["dropout"] == Dist.choice(0.0, 0.1, 0.3)
    assert mlp.constraints == (Constraint("latency_p99_ms", "<=", 20.0),)
    assert mlp.compress.methods == ("prune", "quantize_dynamic")
    assert mlp.compress.time_budget == 60.0

    cnn = load_config(EXAMPLES / "digits_cnn.toml")
    assert cnn.objective.metric == ("accuracy", "latency_p99_ms")
    assert cnn.objective.priority == ("accuracy", "latency_p99_ms")
    assert isinstance(cnn.space, dict) and cnn.space["lr_schedule"].choices == (
        "cosine",
        "onecycle",
    )

    hgb = load_config(EXAMPLES / "breast_cancer_hgb.toml")
    assert hgb.model.spec == "sklearn.ensemble.HistGradientBoostingClassifier"
    assert isinstance(hgb.space, dict)
    # integer parameter of the estimator -> integer range; float bounds -> real range
    assert hgb.space["max_leaf_nodes"].kind == "int"
    assert hgb.space["min_samples_leaf"] == Dist.integer(5, 40)
    assert hgb.space["learning_rate"] == Dist.real(0.03, 0.3, log=True)


# ---- errors name the key and the accepted values ---------------------------------------------

BAD: list[tuple[str, str, str, list[str]]] = [
    (
        "unknown remedy",
        MLP + "[space]\nlearning_rat = {low = 1e-4, high = 1e-2}\n",
        "space.learning_rat",
        ["unknown remedy", "use one of lr, lr_schedule, warmup_fraction"],
    ),
    (
        "inverted range",
        MLP + "[space]\nlr = {low = 0.1, high = 0.001, log = true}\n",
        "space.lr",
        ["inverted range low=0.1 > high=0.001", "swap low and high"],
    ),
    (
        "unknown metric",
        MLP + '[objective]\nmetric = "acc"\n',
        "objective.metric",
        ["unknown metric 'acc'", "use one of accuracy, f1, log_loss"],
    ),
    (
        "unknown table",
        MLP + "[studdy]\nname = 'x'\n",
        "studdy",
        ["unknown top-level table", "use one of space, study, objective, model, data"],
    ),
    (
        "unknown key",
        MLP.replace("n_trials = 2", "n_trial = 2"),
        "study.n_trial",
        ["unknown key", "use one of name, storage, n_trials, timeout, seed, pruner, epochs"],
    ),
    (
        "wrong type",
        MLP.replace("n_trials = 2", 'n_trials = "ten"'),
        "study.n_trials",
        ["must be an integer, got a string"],
    ),
    (
        "wrong type of a table",
        'study = "x"\n' + MLP.replace("[study]\nn_trials = 2\nepochs = 2\n", ""),
        "study",
        ["must be a table, got a string"],
    ),
    (
        "unknown pruner",
        MLP.replace("epochs = 2", 'epochs = 2\npruner = "hyperband"'),
        "study.pruner",
        ["unknown value 'hyperband'", "use one of asha, median, none"],
    ),
    (
        "missing data file",
        MLP.replace('dataset = "digits"', 'train = "nope.csv"\ntarget = "y"'),
        "data.train",
        ["no such file 'nope.csv'"],
    ),
    (
        "unknown dataset",
        MLP.replace('"digits"', '"mnist"'),
        "data.dataset",
        ["unknown value 'mnist'", "digits, iris, wine, breast_cancer, diabetes"],
    ),
    (
        "integer remedy with fractions",
        MLP + "[space]\ndepth = {low = 1.5, high = 3}\n",
        "space.depth",
        ["integer range needs whole numbers"],
    ),
    (
        "range for a categorical remedy",
        MLP + "[space]\nlr_schedule = {low = 0, high = 1}\n",
        "space.lr_schedule",
        ["is categorical", "constant, step, cosine, onecycle"],
    ),
    (
        "unknown choice",
        MLP + '[space]\nlr_schedule = ["cosine", "linear"]\n',
        "space.lr_schedule",
        ["unknown choice 'linear'", "constant, step, cosine, onecycle"],
    ),
    (
        "log range through zero",
        MLP + "[space]\nweight_decay = {low = 0.0, high = 0.1, log = true}\n",
        "space.weight_decay",
        ["log range needs low > 0"],
    ),
    (
        "fixed and searched",
        MLP.replace('kind = "mlp"', 'kind = "mlp"\nwidth = 64') + "[space]\nwidth = [32, 64]\n",
        "space.width",
        ["also fixed in [model]"],
    ),
    (
        "unknown estimator parameter",
        SKLEARN + "[space]\nCC = {low = 0.1, high = 10.0}\n",
        "space.CC",
        ["unknown parameter of the estimator", "C, class_weight"],
    ),
    (
        "non-sklearn class",
        SKLEARN.replace("sklearn.linear_model.LogisticRegression", "os.system"),
        "model.estimator",
        ["not a scikit-learn class path"],
    ),
    (
        "missing estimator class",
        SKLEARN.replace("LogisticRegression", "LogisticRegresion"),
        "model.estimator",
        ["has no estimator class 'LogisticRegresion'"],
    ),
    (
        "unknown model kind",
        MLP.replace('"mlp"', '"transformer"'),
        "model.kind",
        ["unknown value 'transformer'", "use one of mlp, cnn, sklearn, factory"],
    ),
    (
        "epochs for sklearn",
        SKLEARN.replace("n_trials = 3", "n_trials = 3\nepochs = 2"),
        "study.epochs",
        ["only for PyTorch models"],
    ),
    (
        "direction against the metric",
        MLP + '[objective]\nmetric = "accuracy"\ndirection = "minimize"\n',
        "objective.direction",
        ["does not fit accuracy", "use 'maximize'"],
    ),
    (
        "priority outside the objectives",
        MLP + '[objective]\nmetric = ["accuracy", "model_bytes"]\npriority = ["f1"]\n',
        "objective.priority",
        ["'f1' is not an objective", "accuracy, model_bytes"],
    ),
    (
        "constraint operator",
        MLP + '[[constraints]]\nname = "latency_p99_ms"\nop = "<"\nbound = 5\n',
        "constraints[0].op",
        ["unknown value '<'", "use one of <=, >="],
    ),
    (
        "constraint name",
        MLP + '[[constraints]]\nname = "latency"\nop = "<="\nbound = 5\n',
        "constraints[0].name",
        ["unknown measurement 'latency'", "latency_p50_ms, latency_p99_ms"],
    ),
    (
        "storage scheme",
        MLP.replace("epochs = 2", 'epochs = 2\nstorage = "mysql://db/x"'),
        "study.storage",
        ["unsupported storage", "sqlite:///file.db or postgresql://"],
    ),
    (
        "compress method",
        MLP + '[compress]\nmethods = ["prune", "zip"]\n',
        "compress.methods",
        ["unknown method 'zip'", "prune, unstructured, quantize_dynamic"],
    ),
    (
        "dataset and train",
        MLP.replace('dataset = "digits"', 'dataset = "digits"\ntrain = "x.csv"'),
        "data",
        ["not both"],
    ),
    (
        "cnn on a table",
        MLP.replace('"mlp"', '"cnn"').replace('"digits"', '"iris"'),
        "data.dataset",
        ["not an image dataset"],
    ),
]


@pytest.mark.parametrize(("text", "field", "parts"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_config_names_key_and_accepted_values(
    tmp_path: Path, text: str, field: str, parts: list[str]
) -> None:
    err = _error(tmp_path, text)
    assert err.field == field, str(err)
    message = str(err)
    assert message.startswith(f"{field}: ")
    for part in parts:
        assert part in message, message
    assert "\n" not in message


def test_unknown_remedy_lists_every_remedy(tmp_path: Path) -> None:
    err = _error(tmp_path, MLP + "[space]\nlearning_rat = 0.1\n")
    assert err.fix == "use one of " + ", ".join(REMEDY_NAMES)


def test_missing_config_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such config file"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(InputError, match="not valid TOML"):
        load_config(_write(tmp_path, "[study\nname = 1\n"))


def test_missing_model_table(tmp_path: Path) -> None:
    err = _error(tmp_path, "[data]\ndataset = 'iris'\n")
    assert err.field == "model" and "mlp, cnn, sklearn, factory" in str(err)


def test_metric_that_does_not_fit_the_task(tmp_path: Path) -> None:
    cfg = load_config(
        _write(
            tmp_path,
            SKLEARN.replace("iris", "diabetes")
            .replace("linear_model.LogisticRegression", "linear_model.Ridge")
            .replace("params = {max_iter = 300}", "")
            + '[objective]\nmetric = "accuracy"\n',
        )
    )
    with pytest.raises(InputError) as info:
        cfg.load_data()
    assert info.value.field == "objective.metric"
    assert "regression task" in str(info.value) and "r2, mae, mse, rmse" in str(info.value)


# ---- spaces ----------------------------------------------------------------------------------


def test_space_forms(tmp_path: Path) -> None:
    cfg = load_config(
        _write(
            tmp_path,
            MLP
            + textwrap.dedent(
                """
                [space]
                lr = {low = 1e-4, high = 1e-2, log = true}
                depth = {low = 1, high = 3}
                dropout = {low = 0, high = 0.5}
                batch_size = {choices = [32, 128]}
                init = "kaiming"
                warmup_fraction = {low = 0, high = 1, type = "float"}
                """
            ),
        )
    )
    assert isinstance(cfg.space, dict)
    assert cfg.space["lr"] == Dist.real(1e-4, 1e-2, log=True)
    assert cfg.space["depth"] == Dist.integer(1, 3)
    # dropout is a float remedy: integer bounds still make a real range
    assert cfg.space["dropout"] == Dist.real(0.0, 0.5)
    assert cfg.space["batch_size"] == Dist.choice(32, 128)
    assert cfg.space["init"] == Dist.choice("kaiming")  # a single value is fixed
    assert cfg.space["warmup_fraction"] == Dist.real(0.0, 1.0)


def test_space_auto_forms(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, 'space = "auto"\n' + MLP)).space == "auto"
    assert load_config(_write(tmp_path, MLP)).space == "auto"
    err = _error(tmp_path, 'space = "full"\n' + MLP)
    assert err.field == "space" and "auto" in str(err)


# ---- data ------------------------------------------------------------------------------------


def test_digits_for_an_mlp_is_split_and_standardised(tmp_path: Path) -> None:
    data = load_config(_write(tmp_path, MLP)).load_data()
    assert data.X_train.shape == (1437, 64) and data.X_val.shape == (360, 64)
    assert data.X_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert data.task == "classification" and data.n_outputs == 10
    # standardised with the training split's statistics
    assert np.abs(data.X_train.mean(axis=0)).max() < 1e-4
    assert np.bincount(data.y_val).min() >= 34  # stratified: every class ~36 of 360


def test_digits_for_a_cnn_are_images(tmp_path: Path) -> None:
    data = load_config(_write(tmp_path, MLP.replace('"mlp"', '"cnn"'))).load_data()
    assert data.X_train.shape == (1437, 1, 8, 8) and data.image_shape == (1, 8, 8)


def test_sklearn_data_is_not_standardised(tmp_path: Path) -> None:
    data = load_config(_write(tmp_path, SKLEARN.replace("iris", "wine"))).load_data()
    assert data.X_train.dtype == np.float64
    assert data.X_train.max() > 100  # wine's proline is in the hundreds: left as it is


def test_csv_files_with_text_labels_and_validation_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"a": rng.normal(size=80), "b": rng.normal(size=80), "y": ["cat", "dog"] * 40}
    )
    frame.iloc[:60].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[60:].to_parquet(tmp_path / "val.parquet", index=False)
    text = SKLEARN.replace(
        'dataset = "iris"', 'train = "train.csv"\nvalidation = "val.parquet"\ntarget = "y"'
    )
    data = load_config(_write(tmp_path, text)).load_data()
    assert data.classes == ("cat", "dog")
    assert data.X_train.shape == (60, 2) and data.X_val.shape == (20, 2)
    assert list(data.y_val[:4]) == [0, 1, 0, 1]
    assert data.feature_names == ("a", "b")


def test_float_target_is_regression_and_text_feature_refused(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": np.arange(40.0), "city": ["x"] * 40, "y": np.linspace(0, 1, 40)})
    frame.to_csv(tmp_path / "t.csv", index=False)
    text = MLP.replace('dataset = "digits"', 'train = "t.csv"\ntarget = "y"')
    with pytest.raises(InputError) as info:
        load_config(_write(tmp_path, text)).load_data()
    assert info.value.field == "data.features" and "'city' is not numeric" in str(info.value)
    cfg = load_config(_write(tmp_path, text + 'features = ["a"]\n'))
    data = cfg.load_data()
    assert data.task == "regression" and data.n_outputs == 1
    assert data.y_train.dtype == np.float32


def test_missing_target_column(tmp_path: Path) -> None:
    pd.DataFrame({"a": [1.0, 2.0], "b": [0, 1]}).to_csv(tmp_path / "t.csv", index=False)
    text = SKLEARN.replace('dataset = "iris"', 'train = "t.csv"\ntarget = "label"')
    with pytest.raises(InputError) as info:
        load_config(_write(tmp_path, text)).load_data()
    assert info.value.field == "data.target" and "columns: a, b" in str(info.value)


def test_load_dataset_for_compress_keeps_raw_features() -> None:
    data = load_dataset("digits", image=True)
    assert data.X_train.shape[1:] == (1, 8, 8) and float(data.X_train.max()) == 16.0
    with pytest.raises(InputError) as info:
        load_dataset("nope")
    assert info.value.field == "--data" and "digits, iris" in str(info.value)


# ---- storage and tune kwargs -----------------------------------------------------------------


def test_storage_urls(tmp_path: Path) -> None:
    cfg = load_config(
        _write(tmp_path, MLP.replace("epochs = 2", 'epochs = 2\nstorage = "sqlite:///s.db"'))
    )
    assert cfg.study.storage == f"sqlite:///{(tmp_path / 's.db').resolve()}"
    pg = load_config(
        _write(
            tmp_path, MLP.replace("epochs = 2", 'epochs = 2\nstorage = "postgresql://u@h:5432/d"')
        )
    )
    assert pg.study.storage == "postgresql+psycopg://u@h:5432/d"


def test_tune_kwargs(tmp_path: Path) -> None:
    text = SKLEARN.replace("n_trials = 3", "n_trials = 3\nseed = 7\npruner = 'none'") + (
        '[objective]\nmetric = ["accuracy", "model_bytes"]\npriority = ["model_bytes"]\n'
        '[[constraints]]\nname = "accuracy"\nop = ">="\nbound = 0.8\n'
    )
    cfg = load_config(_write(tmp_path, text))
    data = cfg.load_data()
    kw = cfg.to_tune_kwargs(data, n_trials=5, seed_offset=2, study_name="s1")
    assert kw["metric"] == ("accuracy", "model_bytes")
    assert kw["priority"] == ("model_bytes",)
    assert kw["n_trials"] == 5 and kw["seed"] == 9 and kw["study_name"] == "s1"
    assert kw["pruner"] == "none" and "storage" not in kw and "epochs" not in kw
    assert kw["constraints"] == (Constraint("accuracy", ">=", 0.8),)
    assert len(kw["data"]) == 4 and kw["data"][0].shape == (120, 4)
    assert type(kw["objective_or_model"]).__name__ == "LogisticRegression"
    assert kw["objective_or_model"].max_iter == 300


def test_run_sklearn_config_end_to_end(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    cfg = load_config(
        _write(tmp_path, SKLEARN + "[space]\nC = {low = 0.01, high = 10.0, log = true}\n")
    )
    seen: list[dict[str, object]] = []
    result = cfg.run(storage=f"sqlite:///{db}", progress=seen.append)
    doc = result.to_dict()
    assert doc["schema"] == "tunelens.tune/1"
    assert [t["number"] for t in doc["trials"]] == [0, 1, 2]
    assert [e["done"] for e in seen] == [1, 2, 3]
    assert all(0.01 <= t["params"]["C"] <= 10.0 for t in doc["trials"])
    assert doc["best"]["value"] > 0.8
    stored = optuna.load_study(study_name="cfg", storage=f"sqlite:///{db}")
    assert len(stored.trials) == 3  # plain Optuna storage: optuna-dashboard reads it


def test_build_mlp_and_cnn_from_the_data(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    cfg = load_config(_write(tmp_path, MLP.replace('kind = "mlp"', 'kind = "mlp"\ndepth = 1')))
    data = cfg.load_data()
    net = cfg.build_model(data)(width=32)
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert linears[0].in_features == 64 and linears[-1].out_features == 10
    assert len(linears) == 2  # depth = 1 hidden layer, fixed in [model]
    cnn_cfg = load_config(_write(tmp_path, MLP.replace('"mlp"', '"cnn"')))
    cnn_data = cnn_cfg.load_data()
    cnn = cnn_cfg.build_model(cnn_data)()
    out = cnn(torch.as_tensor(cnn_data.X_val[:3]))
    assert tuple(out.shape) == (3, 10)


def test_parse_config_mapping_and_classification_names() -> None:
    cfg = parse_config({"model": {"kind": "mlp"}, "data": {"dataset": "iris"}}, "x/abc.toml")
    assert cfg.study.name == "abc" and cfg.study.n_trials == 20 and cfg.study.seed == 0
    assert cfg.objective.metric is None and cfg.space == "auto"
    assert "accuracy" in CLASSIFICATION_METRICS
    assert not math.isnan(cfg.data.validation_fraction)
