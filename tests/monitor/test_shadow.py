"""Shadow mode: the champion answers, the challenger is logged on the same rows and ids."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import accuracy_score

from tunelens.errors import InputError
from tunelens.monitor import Monitor, Shadow
from tunelens.store import Store


def _models(rng: np.random.Generator) -> tuple[Any, Any, np.ndarray, np.ndarray]:
    X = rng.normal(size=(600, 3))
    y = (X[:, 0] + 0.3 * X[:, 1] > 0).astype(int)

    def champion(rows: np.ndarray) -> np.ndarray:
        return (rows[:, 1] > 0).astype(int)  # a poor model

    def challenger(rows: np.ndarray) -> np.ndarray:
        return (rows[:, 0] > 0).astype(int)  # a better one

    return champion, challenger, X, y


def test_champion_answers_and_both_are_logged_on_the_same_ids(store: Store) -> None:
    champion, challenger, X, y = _models(np.random.default_rng(0))
    champ = Monitor("m", store, resources=False)
    chall = Monitor("m@challenger", store, resources=False)
    ids: list[str] = []
    with Shadow(champ, chall, champion, challenger) as shadow:
        for start in range(0, 600, 50):
            out = shadow(X[start : start + 50])
            np.testing.assert_array_equal(out, champion(X[start : start + 50]))
            assert len(shadow.last_ids) == 50
            ids += shadow.last_ids
        shadow.log_labels(ids, y)
        assert shadow.requests == 12 and shadow.challenger_errors == 0 and shadow.skipped == 0
    got = {}
    for name, fn in (("m", champion), ("m@challenger", challenger)):
        rows = store.scan(name, columns=["id", "prediction"]).to_pandas()
        assert sorted(rows["id"]) == sorted(ids)
        by_id = dict(zip(rows["id"], rows["prediction"], strict=True))
        np.testing.assert_array_equal([by_id[i] for i in ids], fn(X))
        got[name] = float(Monitor(name, store, resources=False).summary()["accuracy"])
    assert got["m"] == pytest.approx(accuracy_score(y, champion(X)))
    assert got["m@challenger"] == pytest.approx(accuracy_score(y, challenger(X)))
    assert got["m@challenger"] > got["m"]


def test_a_failing_challenger_never_reaches_the_caller(store: Store) -> None:
    champion, _, X, _ = _models(np.random.default_rng(1))

    def broken(rows: np.ndarray) -> np.ndarray:
        raise RuntimeError("challenger bug")

    champ = Monitor("m", store, resources=False)
    chall = Monitor("m@challenger", store, resources=False)
    with Shadow(champ, chall, champion, broken) as shadow, pytest.warns(RuntimeWarning):
        np.testing.assert_array_equal(shadow(X[:10]), champion(X[:10]))
        shadow.flush()
    assert shadow.challenger_errors == 1
    assert chall.metrics(window="1d").empty or chall.metrics(window="1d")["rows"].sum() == 0


def test_the_answer_does_not_wait_for_the_challenger(store: Store) -> None:
    champion, challenger, X, _ = _models(np.random.default_rng(2))
    release = threading.Event()
    finished = threading.Event()

    def slow(rows: np.ndarray) -> np.ndarray:
        release.wait(10)
        finished.set()
        return challenger(rows)

    champ = Monitor("m", store, resources=False)
    chall = Monitor("m@challenger", store, resources=False)
    with Shadow(champ, chall, champion, slow, max_pending=1) as shadow:
        shadow(X[:5])  # returns while the challenger still waits
        assert not finished.is_set()
        shadow(X[5:10])  # the challenger is behind by max_pending: skipped, not awaited
        assert shadow.skipped == 1
        release.set()
    assert finished.is_set() and shadow.requests == 2


def test_same_model_name_is_refused(store: Store) -> None:
    champ = Monitor("m", store, resources=False)
    with pytest.raises(InputError) as err:
        Shadow(champ, Monitor("m", store, resources=False), len, len)
    assert err.value.field == "challenger" and "m@challenger" in str(err.value)
    with pytest.raises(InputError) as err:
        Shadow(champ, Monitor("n", store, resources=False), len, len, max_pending=0)
    assert err.value.field == "max_pending"


def test_a_clock_stamps_both_sides_of_a_request(store: Store) -> None:
    from datetime import UTC, datetime, timedelta

    champ, chall = Monitor("m", store, resources=False), Monitor("m@2", store, resources=False)
    now = [datetime(2026, 3, 9, 8, tzinfo=UTC)]
    shadow = Shadow(
        champ, chall, lambda X: [0] * len(X), lambda X: [1] * len(X), clock=lambda: now[0]
    )
    shadow(np.array([[1.0], [2.0]]))
    now[0] += timedelta(hours=5)  # the simulated clock moves before the challenger logs
    shadow(np.array([[3.0]]))
    shadow.close()
    for model in ("m", "m@2"):
        stamps = sorted(store.scan(model, columns=["timestamp"]).to_pandas()["timestamp"])
        assert [s.hour for s in stamps] == [8, 8, 13]
        assert stamps[0].date().isoformat() == "2026-03-09"
