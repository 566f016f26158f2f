"""Array encoding (deflated ``zdata`` for large arrays) and ``update(validate=False)``."""

from __future__ import annotations

import base64
import json
import warnings
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tunelens.metrics import (
    BinaryRankingState,
    CalibrationState,
    ClassificationState,
    MulticlassRankingState,
    ProbabilisticState,
    QuantileSketch,
    RegressionState,
    state_from_dict,
)
from tunelens.metrics._validation import decode_array, encode_array


def _roundtrip(state: Any) -> Any:
    return state_from_dict(json.loads(json.dumps(state.to_dict())))


def _compute(state: Any) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dict(state.compute())


def _arrays(obj: Any) -> list[dict[str, Any]]:
    """Every encoded array (a dict with ``dtype``) inside a ``to_dict`` tree."""
    if isinstance(obj, dict):
        if "dtype" in obj:
            return [obj]
        return [a for v in obj.values() for a in _arrays(v)]
    if isinstance(obj, list):
        return [a for v in obj for a in _arrays(v)]
    return []


def _old_monitor_pack(obj: Any) -> Any:
    """The monitor's former ``_pack`` over the former plain-``data`` encoding."""
    if isinstance(obj, dict):
        data = obj.get("data")
        if isinstance(data, str) and len(data) > 1024 and "dtype" in obj:
            packed = zlib.compress(base64.b64decode(data), 1)
            rest = {k: v for k, v in obj.items() if k != "data"}
            return rest | {"zdata": base64.b64encode(packed).decode("ascii")}
        return {k: _old_monitor_pack(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_old_monitor_pack(v) for v in obj]
    return obj


def _plain(a: np.ndarray) -> dict[str, Any]:
    """The former encoding: base64 of the little-endian bytes under ``data``."""
    le = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False)
    return {
        "dtype": le.dtype.str,
        "shape": list(a.shape),
        "data": base64.b64encode(le.tobytes()).decode("ascii"),
    }


# -- encoding -------------------------------------------------------------------------------
def test_large_streaming_state_json_roundtrip_is_deflated_and_identical() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(5000) < 0.3
    s = rng.random(5000)
    st = BinaryRankingState(mode="streaming")
    st.update(y, s)
    d = st.to_dict()
    assert "zdata" in d["hist"] and "data" not in d["hist"]
    assert len(json.dumps(d)) < st._hist.nbytes // 10  # far below the raw 1 MiB histogram
    back = _roundtrip(st)
    assert back.compute() == st.compute()
    assert np.array_equal(back._hist, st._hist)
    assert back.roc_curve()[0].tolist() == st.roc_curve()[0].tolist()


def test_large_multiclass_and_exact_states_roundtrip() -> None:
    rng = np.random.default_rng(1)
    n, k = 3000, 4
    t = rng.integers(0, k, n)
    p = rng.dirichlet(np.ones(k), n)
    for mode in ("exact", "streaming"):
        st = MulticlassRankingState(k, mode=mode)  # type: ignore[arg-type]
        st.update(t, p)
        d = st.to_dict()
        assert any("zdata" in a for a in _arrays(d))
        assert _compute(_roundtrip(st)) == _compute(st)
    cs = ClassificationState()
    cs.update(rng.integers(0, 40, n), rng.integers(0, 40, n))  # 40x40 float64 = 12.8 kB
    assert "zdata" in cs.to_dict()["cm"]
    back = _roundtrip(cs)
    assert back.labels == cs.labels
    assert np.array_equal(back.confusion_matrix(), cs.confusion_matrix())


@pytest.mark.parametrize("nbytes", [0, 8, 760, 768, 776, 4096])
def test_threshold_and_layout_match_the_monitors_former_pack(nbytes: int) -> None:
    a = np.arange(nbytes // 8, dtype=np.float64) * 0.5
    enc = encode_array(a)
    assert ("zdata" in enc) == (nbytes > 768)
    assert ("data" in enc) == (nbytes <= 768)
    assert enc == _old_monitor_pack(_plain(a))  # byte for byte, same keys in the same order
    assert list(enc) == list(_old_monitor_pack(_plain(a)))
    out = decode_array(json.loads(json.dumps(enc)))
    assert out.dtype == a.dtype and np.array_equal(out, a)


def test_plain_data_still_decodes() -> None:
    for a in (
        np.arange(10, dtype=np.int64),
        np.linspace(0, 1, 5000),
        np.zeros((30, 30)),
        np.array([], dtype=np.float64),
    ):
        out = decode_array(_plain(a))
        assert out.dtype == a.dtype and out.shape == a.shape and np.array_equal(out, a)
        assert out.flags.writeable


def test_states_stored_in_the_former_layouts_read_back() -> None:
    """States written with plain ``data`` (metrics) or monitor-packed ``zdata`` both load."""
    rng = np.random.default_rng(2)
    st = BinaryRankingState(mode="streaming", n_bins=4096)
    st.update(rng.random(500) < 0.5, rng.random(500))
    d = st.to_dict()
    hist = decode_array(d["hist"])
    plain = d | {"hist": _plain(hist)}
    packed = _old_monitor_pack(plain)
    assert "data" in plain["hist"] and "zdata" in packed["hist"]
    for stored in (plain, packed):
        back = state_from_dict(json.loads(json.dumps(stored)))
        assert back.compute() == st.compute()
        assert np.array_equal(back._hist, st._hist)


def test_big_endian_input_roundtrips() -> None:
    a = np.arange(500, dtype=">f8")
    out = decode_array(json.loads(json.dumps(encode_array(a))))
    assert np.array_equal(out, a) and out.dtype == np.dtype("=f8")


# -- validate=False -------------------------------------------------------------------------
def _same_state(a: Any, b: Any) -> None:
    assert json.dumps(a.to_dict()) == json.dumps(b.to_dict())
    ca, cb = _compute(a), _compute(b)
    assert set(ca) == set(cb)
    for key in ca:
        assert ca[key] == cb[key] or (ca[key] != ca[key] and cb[key] != cb[key]), key


def _both(make: Callable[[], Any], *batches: tuple[Any, ...]) -> None:
    """Updating with and without validation gives identical states."""
    checked, unchecked = make(), make()
    for args in batches:
        checked.update(*args)
        unchecked.update(*args, validate=False)
    _same_state(checked, unchecked)


@pytest.mark.parametrize("weighted", [False, True])
def test_validate_false_gives_identical_results(weighted: bool) -> None:
    rng = np.random.default_rng(3)
    n, k = 400, 4

    def w() -> tuple[Any, ...]:
        return (rng.random(n) * 3,) if weighted else ()

    yb = rng.random(n) < 0.4
    pb = rng.random(n)
    yi = rng.integers(0, k, n)
    pm = rng.dirichlet(np.ones(k), n)
    wb, wm = w(), w()
    # binary targets as bool, 0/1 ints and 0/1 floats; a column vector for scores
    for y in (yb, yb.astype(np.int64), yb.astype(np.float64)):
        _both(
            lambda: BinaryRankingState(),
            (y, pb, *wb),
            (y[:10], pb[:10, None], *(x[:10] for x in wb)),
        )
        _both(lambda: BinaryRankingState(mode="streaming"), (y, pb, *wb))
        _both(lambda: BinaryRankingState(mode="streaming", scale="linear"), (y, pb, *wb))
        _both(lambda: CalibrationState(7), (y, pb, *wb))
        _both(lambda: ProbabilisticState(2), (y, pb, *wb), (y, pb[:, None], *wb))
    for t in (yi, yi.astype(np.float64), yi.astype(np.int32)):
        _both(lambda: MulticlassRankingState(k), (t, pm, *wm))
        _both(lambda: MulticlassRankingState(k, mode="streaming"), (t, pm, *wm))
        _both(lambda: ProbabilisticState(k), (t, pm, *wm))
    labels = rng.choice(np.array(["a", "b", "c"]), n)
    _both(lambda: ClassificationState(), (yi, rng.integers(0, k, n), *wb), (yi[:9], yi[:9]))
    _both(lambda: ClassificationState(), (labels, labels[::-1], *wb), (labels[:, None], labels))
    _both(lambda: ClassificationState(labels=range(k)), (yi, rng.integers(0, k, n), *wb))
    yr = rng.normal(1e3, 5, n)
    _both(lambda: RegressionState(), (yr, yr + rng.normal(0, 1, n), *wb), (yr[:, None], yr, *wb))
    _both(lambda: QuantileSketch(), (rng.exponential(5, n),), (np.zeros(3),))

    pred = rng.integers(0, k, n)
    checked, unchecked = ClassificationState(labels=range(2)), ClassificationState(labels=range(2))
    for cs, validate in ((checked, True), (unchecked, False)):
        cs.update_codes(yi % 2, pred % 2, 2, validate=validate)
        cs.update_codes(yi, pred, k, *wb, validate=validate)  # grows from 2 to k classes
        cs.update_codes(yi[:, None], pred, k + 1, *wm, validate=validate)
    _same_state(checked, unchecked)


def test_validate_false_skips_the_row_sum_warning() -> None:
    """Rows within the log-time tolerance (1e-6) do not warn again at compute time."""
    rng = np.random.default_rng(4)
    p = rng.dirichlet(np.ones(3), 50)
    p[:, 0] += 1e-7  # accepted when logged, beyond ProbabilisticState's 1.5e-8
    t = rng.integers(0, 3, 50)
    with pytest.warns(UserWarning, match="do not sum to one"):
        ProbabilisticState(3).update(t, p)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        st = ProbabilisticState(3)
        st.update(t, p, validate=False)
        mst = MulticlassRankingState(3, mode="streaming")
        mst.update(t, p, validate=False)
    ref = ProbabilisticState(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.update(t, p)
    _same_state(ref, st)


def test_validate_false_skips_the_checks() -> None:
    """The boundary checks raise by default and are not run with validate=False."""
    cases: list[tuple[Callable[[], Any], tuple[Any, ...]]] = [
        (lambda: RegressionState(), ([1.0, np.inf], [1.0, 2.0])),
        (lambda: RegressionState(), ([1.0, 2.0], [1.0, 2.0], [1.0, -1.0])),
        (lambda: CalibrationState(), ([0, 1], [0.5, 1.5])),
        (lambda: ProbabilisticState(2), ([0, 1], [0.2, -0.1])),
        (lambda: MulticlassRankingState(2, mode="exact"), ([0, 1], [[0.2, 0.2], [0.5, 0.5]])),
        (lambda: BinaryRankingState(), ([0, 1], [0.2, np.nan])),
        (lambda: QuantileSketch(), ([1.0, -1.0],)),
        (lambda: ClassificationState(), ([0, np.nan], [0.0, 1.0])),
    ]
    for make, args in cases:
        with pytest.raises(ValueError):
            make().update(*args)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            make().update(*args, validate=False)
    with pytest.raises(ValueError):
        ClassificationState().update_codes([0, 1], [0, 1], 2, [1.0, -1.0])
    ClassificationState().update_codes([0, 1], [0, 1], 2, [1.0, -1.0], validate=False)


# -- shared per-class AUCs --------------------------------------------------------------------
def test_multiclass_compute_computes_each_class_auc_once(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    k = 4
    t = rng.integers(0, k - 1, 200)  # class 3 absent: its AUC is undefined
    p = rng.dirichlet(np.ones(k), 200)
    st = MulticlassRankingState(k)
    st.update(t, p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = {
            "roc_auc": float(st.roc_auc("macro")),
            "roc_auc_weighted": float(st.roc_auc("weighted")),
            "pr_auc": float(st.average_precision("macro")),
        }
    calls = 0
    original = BinaryRankingState.roc_auc

    def counting(self: BinaryRankingState) -> float:
        nonlocal calls
        calls += 1
        return original(self)

    monkeypatch.setattr(BinaryRankingState, "roc_auc", counting)
    with pytest.warns(UserWarning) as record:
        out = st.compute()
    assert calls == k
    assert out == expected
    messages = [str(w.message) for w in record]
    assert messages == ["ROC AUC undefined for classes [3] (absent or every sample)"]
