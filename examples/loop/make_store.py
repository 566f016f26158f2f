"""Build the loop example: a biopsy classifier that served 3,000 labelled cases after a drift.

Writes, beside this file (or into the folder given as the first argument, with a copy of
``loop.toml`` and ``trainers.py``):

- ``loop.duckdb``: the store, with model ``biopsy``: 3,000 predictions on scikit-learn's
  shipped breast-cancer cases (no download) with their features and labels, logged after
  the lab's segmentation software started tracing nuclei 30% wider (every radius and
  perimeter measurement x1.3, every area x1.69), so accuracy fell;
- ``reference.parquet``: the 341 cases the champion was trained on (``diagnosis``: 1 =
  malignant);
- ``model.pkl``: the champion (``trainers.scaled_logistic`` fitted on them).

Then::

    python examples/loop/make_store.py
    tunelens loop --store examples/loop/loop.duckdb --model biopsy --config examples/loop/loop.toml
    tunelens loop --store examples/loop/loop.duckdb --model biopsy --status
"""

from __future__ import annotations

import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from trainers import scaled_logistic  # noqa: E402

from tunelens.monitor import Monitor  # noqa: E402
from tunelens.store import open_store  # noqa: E402

MODEL = "biopsy"
CASES = 3000


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if out != HERE:
        for name in ("loop.toml", "trainers.py"):
            shutil.copy(HERE / name, out / name)
    data = load_breast_cancer()
    names = [n.replace(" ", "_") for n in data.feature_names]
    frame = pd.DataFrame(data.data, columns=names)
    frame["diagnosis"] = (data.target == 0).astype(np.int64)  # 1 = malignant
    reference, held_out = train_test_split(
        frame, train_size=0.6, random_state=0, stratify=frame["diagnosis"]
    )
    champion = scaled_logistic().fit(reference[names], reference["diagnosis"])
    reference.to_parquet(out / "reference.parquet", index=False)
    with (out / "model.pkl").open("wb") as handle:
        pickle.dump(champion, handle)

    rng = np.random.default_rng(0)
    cases = held_out.sample(CASES, replace=True, random_state=0).reset_index(drop=True)
    features = cases[names] * rng.normal(1.0, 0.03, size=(CASES, len(names)))
    for name in names:  # the segmentation update: outlines traced 30% wider
        if "radius" in name or "perimeter" in name:
            features[name] *= 1.3
        elif "area" in name:
            features[name] *= 1.69
    stamps = pd.date_range("2026-03-06", periods=CASES, freq="90s", tz="UTC")
    ids = [f"case-{i}" for i in range(CASES)]
    store_path = out / "loop.duckdb"
    for leftover in (store_path, out / "loop.duckdb.wal", out / "loop.duckdb.optuna.db"):
        leftover.unlink(missing_ok=True)
    with open_store(str(store_path)) as store, Monitor(MODEL, store, resources=False) as mon:
        mon.log(ids, features, champion.predict(features), timestamps=stamps)
        mon.log_labels(ids, cases["diagnosis"].to_numpy())
    accuracy = float((champion.predict(features) == cases["diagnosis"]).mean())
    print(f"wrote {store_path} (model {MODEL!r}, {CASES} labelled cases, accuracy {accuracy:.3f})")
    print(f"wrote {out / 'reference.parquet'} and {out / 'model.pkl'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else HERE)
