"""tunelens.tune.champion: paired champion/challenger tests and the promotion decision."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from scipy import stats

from tunelens.errors import InputError
from tunelens.tune.champion import (
    EXACT_BELOW,
    Comparison,
    compare,
    decide,
    delong_paired,
    mcnemar_p,
)


def _discordant(b: int, c: int, both_right: int = 50, both_wrong: int = 10) -> Any:
    """Labels and predictions with exactly ``b`` champion-only and ``c`` challenger-only hits."""
    n = b + c + both_right + both_wrong
    y = np.zeros(n, dtype=int)
    champ = np.zeros(n, dtype=int)
    chal = np.zeros(n, dtype=int)
    chal[:b] = 1  # champion right, challenger wrong
    champ[b : b + c] = 1  # challenger right, champion wrong
    champ[b + c + both_right :] = 1
    chal[b + c + both_right :] = 1
    return y, champ, chal


def _noisy(y: Any, accuracy: float, rng: np.random.Generator) -> Any:
    flip = rng.random(y.shape[0]) >= accuracy
    return np.where(flip, 1 - y, y)


# --------------------------------------------------------------------------- McNemar


@pytest.mark.parametrize("b, c", [(0, 0), (0, 5), (3, 9), (7, 2), (10, 10), (12, 12), (1, 23)])
def test_mcnemar_exact_equals_binomial(b: int, c: int) -> None:
    y, champ, chal = _discordant(b, c)
    cmp = compare(y, champ, chal)
    assert cmp.test == "mcnemar_exact"
    assert cmp.discordant == (b, c)
    expected = 1.0 if b + c == 0 else stats.binomtest(c, b + c, 0.5).pvalue
    assert cmp.p_value == pytest.approx(expected, rel=1e-12, abs=1e-15)
    # statsmodels' formula: min(1, 2 * binom.cdf(min(b, c), b + c, 0.5))
    if b + c:
        assert cmp.p_value == pytest.approx(min(1.0, 2 * stats.binom.cdf(min(b, c), b + c, 0.5)))
    assert cmp.difference == pytest.approx((c - b) / y.shape[0])


@pytest.mark.parametrize("b, c", [(13, 12), (40, 62), (100, 100), (30, 70), (250, 180)])
def test_mcnemar_chi2_with_continuity_correction(b: int, c: int) -> None:
    assert b + c >= EXACT_BELOW
    y, champ, chal = _discordant(b, c)
    cmp = compare(y, champ, chal)
    assert cmp.test == "mcnemar_chi2"
    chi = (abs(b - c) - 1) ** 2 / (b + c)
    assert cmp.statistic == pytest.approx(chi)
    assert cmp.p_value == pytest.approx(stats.chi2.sf(chi, df=1), rel=1e-12)
    assert cmp.significant == (cmp.p_value < 0.05 and c > b)


def test_mcnemar_switches_at_25_discordant_pairs() -> None:
    assert mcnemar_p(10, 14)[2] == "mcnemar_exact"
    assert mcnemar_p(10, 15)[2] == "mcnemar_chi2"


def test_accuracy_values_and_string_labels() -> None:
    y = np.array(["cat", "dog", "cat", "bird"] * 25)
    champ = y.copy()
    champ[:20] = "dog"
    chal = y.copy()
    chal[:3] = "bird"
    cmp = compare(y, champ, chal)
    assert cmp.task == "classification" and cmp.metric == "accuracy"
    assert cmp.champion == pytest.approx(np.mean(champ == y))
    assert cmp.challenger == pytest.approx(np.mean(chal == y))
    lo, hi = cmp.interval
    assert lo <= cmp.difference <= hi


# ------------------------------------------------------------------- decisions under simulation


def test_pure_label_noise_rarely_promotes() -> None:
    """Retraining cannot help: both models guess at random; 'auto' promotes in <= ~alpha."""
    promoted = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 2, 5000)
        champ = rng.integers(0, 2, 5000)
        chal = rng.integers(0, 2, 5000)
        cmp = compare(y, champ, chal, n_boot=200, seed=seed)
        promoted += decide(cmp, policy="auto").action == "promote"
    assert promoted / 200 <= 0.08


def test_truly_better_challenger_is_significant() -> None:
    hits = 0
    for seed in range(50):
        rng = np.random.default_rng(1000 + seed)
        y = rng.integers(0, 2, 2000)
        cmp = compare(y, _noisy(y, 0.80, rng), _noisy(y, 0.85, rng), n_boot=200, seed=seed)
        hits += cmp.significant
    assert hits / 50 >= 0.95


def test_bootstrap_interval_covers_true_accuracy_difference() -> None:
    covered = 0
    sims = 200
    for seed in range(sims):
        rng = np.random.default_rng(5000 + seed)
        y = rng.integers(0, 2, 400)
        cmp = compare(y, _noisy(y, 0.75, rng), _noisy(y, 0.80, rng), n_boot=500, seed=seed)
        lo, hi = cmp.interval
        covered += lo <= 0.05 <= hi
    assert 0.88 <= covered / sims <= 0.99


def test_bootstrap_interval_covers_true_mse_reduction() -> None:
    covered = 0
    sims = 150
    for seed in range(sims):
        rng = np.random.default_rng(9000 + seed)
        y = rng.normal(size=300)
        cmp = compare(
            y,
            y + rng.normal(0.0, 1.0, 300),
            y + rng.normal(0.0, 0.9, 300),
            n_boot=400,
            seed=seed,
        )
        lo, hi = cmp.interval
        covered += lo <= 1.0 - 0.81 <= hi
    assert 0.85 <= covered / sims <= 0.99


# --------------------------------------------------------------------------- regression


@pytest.mark.parametrize("metric", ["mse", "mae"])
def test_regression_wilcoxon_and_ttest_equal_scipy(metric: str) -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(size=500)
    pa = y + rng.normal(0.0, 1.0, 500)
    pb = y + rng.normal(0.0, 0.85, 500)
    cmp = compare(y, pa, pb, metric=metric, n_boot=300)
    if metric == "mse":
        la, lb = (pa - y) ** 2, (pb - y) ** 2
    else:
        la, lb = np.abs(pa - y), np.abs(pb - y)
    w = stats.wilcoxon(la, lb)
    assert cmp.task == "regression" and cmp.test == "wilcoxon"
    assert cmp.p_value == pytest.approx(w.pvalue, rel=1e-12)
    assert cmp.statistic == pytest.approx(w.statistic)
    assert cmp.other_tests["ttest_rel"] == pytest.approx(stats.ttest_rel(la, lb).pvalue, rel=1e-12)
    assert cmp.champion == pytest.approx(la.mean())
    assert cmp.challenger == pytest.approx(lb.mean())
    assert cmp.difference == pytest.approx(la.mean() - lb.mean())  # loss reduction
    assert cmp.difference > 0 and cmp.significant


def test_regression_identical_models_are_not_different() -> None:
    y = np.linspace(0.0, 1.0, 50)
    p = y + 0.1
    cmp = compare(y, p, p.copy())
    assert cmp.p_value == 1.0 and not cmp.significant and cmp.difference == 0.0
    assert cmp.interval == (0.0, 0.0)


def test_task_auto_detection() -> None:
    y = np.array([0.5, 1.5, 2.0, 3.25])
    assert compare(y, y + 0.1, y - 0.2, n_boot=10).task == "regression"
    yi = np.array([0, 1, 2, 1, 0, 2])
    assert compare(yi, yi, yi, n_boot=10).task == "classification"
    assert compare(yi, yi + 0.5, yi, n_boot=10).task == "regression"
    assert compare(yi, yi, yi, task="regression", n_boot=10).metric == "mse"
    assert compare(y, y, y, metric="mae", n_boot=10).task == "regression"


# --------------------------------------------------------------------------- scores: AUC, log loss


def _delong_direct(y: Any, a: Any, b: Any) -> tuple[float, float]:
    """DeLong, DeLong & Clarke-Pearson (1988) from the pairwise kernel, O(m n)."""
    pos, neg = y == 1, y == 0
    comps = []
    for s in (a, b):
        x, z = s[pos][:, None], s[neg][None, :]
        psi = (x > z) + 0.5 * (x == z)
        comps.append((psi.mean(), psi.mean(axis=1), psi.mean(axis=0)))
    m, n = int(pos.sum()), int(neg.sum())
    v10 = np.stack([c[1] for c in comps])
    v01 = np.stack([c[2] for c in comps])
    s = np.cov(v10) / m + np.cov(v01) / n
    diff = comps[1][0] - comps[0][0]
    z = diff / math.sqrt(s[0, 0] + s[1, 1] - 2 * s[0, 1])
    return z, 2 * stats.norm.sf(abs(z))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_delong_equals_direct_pairwise_formula(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 150)
    # rounded scores: ties within and across classes
    a = np.round(y * 0.4 + rng.random(150) * 0.8, 1)
    b = np.round(y * 0.7 + rng.random(150) * 0.8, 2)
    z, p = delong_paired(y == 1, a.astype(float), b.astype(float))
    z_ref, p_ref = _delong_direct(y, a, b)
    assert z == pytest.approx(z_ref, rel=1e-9)
    assert p == pytest.approx(p_ref, rel=1e-9)
    cmp = compare(y, None, None, champion_score=a, challenger_score=b, metric="roc_auc", n_boot=200)
    assert cmp.test == "delong"
    assert cmp.p_value == pytest.approx(p_ref, rel=1e-9)
    assert cmp.statistic == pytest.approx(z_ref, rel=1e-9)


def test_delong_known_small_example() -> None:
    # 4 positives, 4 negatives. AUC(a) = 15/16, AUC(b) = 8/16 (worked by hand from the
    # pairwise comparisons), and the package's other DeLong (quality.intervals) agrees.
    y = np.array([0, 0, 1, 1, 0, 1, 0, 1])
    a = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9, 0.3, 0.7])
    b = np.array([0.5, 0.4, 0.3, 0.6, 0.2, 0.1, 0.7, 0.8])
    cmp = compare(y, None, None, champion_score=b, challenger_score=a, metric="roc_auc", n_boot=50)
    assert cmp.challenger == pytest.approx(15 / 16)
    assert cmp.champion == pytest.approx(8 / 16)
    z_ref, p_ref = _delong_direct(y, b, a)
    assert cmp.statistic == pytest.approx(z_ref) and cmp.p_value == pytest.approx(p_ref)
    from tunelens.quality.intervals import delong_test

    z_q, p_q = delong_test(y, a, b)
    assert cmp.statistic == pytest.approx(z_q) and cmp.p_value == pytest.approx(p_q)


def test_auc_and_log_loss_values_equal_sklearn() -> None:
    from sklearn.metrics import log_loss, roc_auc_score

    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, 600)
    sa = np.clip(0.3 * y + 0.7 * rng.random(600), 0.01, 0.99)
    sb = np.clip(0.5 * y + 0.5 * rng.random(600), 0.01, 0.99)
    auc = compare(y, None, None, champion_score=sa, challenger_score=sb, metric="roc_auc")
    assert auc.champion == pytest.approx(roc_auc_score(y, sa))
    assert auc.challenger == pytest.approx(roc_auc_score(y, sb))
    assert auc.difference == pytest.approx(auc.challenger - auc.champion)
    assert auc.significant and "bootstrap" in auc.other_tests
    ll = compare(
        y, (sa > 0.5).astype(int), (sb > 0.5).astype(int),
        champion_score=sa, challenger_score=sb, metric="log_loss",
    )  # fmt: skip
    assert ll.test == "bootstrap"
    assert ll.champion == pytest.approx(log_loss(y, sa))
    assert ll.challenger == pytest.approx(log_loss(y, sb))
    assert ll.difference == pytest.approx(log_loss(y, sa) - log_loss(y, sb))  # reduction
    assert ll.significant
    # every replicate on the positive side: the p-value is floored at 1 / (n_boot + 1)
    assert ll.p_value == pytest.approx(1 / 2001)


def test_auc_bootstrap_replicates_equal_resampled_sklearn_auc() -> None:
    from sklearn.metrics import roc_auc_score

    from tunelens.tune.champion import _boot_auc_diff

    rng = np.random.default_rng(2)
    n = 300
    y = rng.integers(0, 2, n)
    sa = np.asarray(np.round(rng.random(n) + 0.3 * y, 1), dtype=np.float64)  # ties
    sb = np.asarray(np.round(rng.random(n) + 0.5 * y, 2), dtype=np.float64)
    reps = _boot_auc_diff(y == 1, sa, sb, 40, 3)
    idx = np.random.default_rng(3).integers(0, n, size=(40, n))  # the same rows
    ref = [roc_auc_score(y[i], sb[i]) - roc_auc_score(y[i], sa[i]) for i in idx]
    np.testing.assert_allclose(reps, ref, rtol=0, atol=1e-12)


def test_bootstrap_p_value_of_equal_models_is_one() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 100)
    s = rng.random(100)
    cmp = compare(y, None, None, champion_score=s, challenger_score=s, metric="log_loss")
    assert cmp.difference == 0.0 and cmp.p_value == 1.0 and not cmp.significant


# --------------------------------------------------------------------------- outputs


def test_to_dict_is_json_safe_and_summary_reads_plainly() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 2000)
    cmp = compare(y, _noisy(y, 0.87, rng), _noisy(y, 0.91, rng))
    d = json.loads(json.dumps(cmp.to_dict(), allow_nan=False))
    assert d["discordant"] == {
        "champion_only": cmp.discordant[0],  # type: ignore[index]
        "challenger_only": cmp.discordant[1],  # type: ignore[index]
    }
    assert d["significant"] is True and d["test"] == "mcnemar_chi2"
    pattern = (
        r"challenger is better: accuracy 0\.\d{3} vs 0\.\d{3} \(\+0\.\d{3}, "
        r"95% CI \[\+0\.\d{3}, \+0\.\d{3}\]\), McNemar p [=<] [\d.]+ on 2,000 rows"
    )
    assert re.fullmatch(pattern, cmp.summary()), cmp.summary()
    decision = decide(cmp)
    json.dumps(decision.to_dict(), allow_nan=False)
    mse = compare(np.zeros(200), rng.normal(0, 1, 200), rng.normal(0, 0.5, 200))
    assert "mse" in mse.summary() and "Wilcoxon p" in mse.summary()


def test_same_seed_same_interval() -> None:
    rng = np.random.default_rng(8)
    y = rng.normal(size=300)
    pa, pb = y + rng.normal(size=300), y + rng.normal(size=300)
    assert compare(y, pa, pb, seed=4).interval == compare(y, pa, pb, seed=4).interval


def _cmp(significant: bool, difference: float, p: float = 0.01) -> Comparison:
    return Comparison(
        task="classification", metric="accuracy", n=1000, champion=0.8,
        challenger=0.8 + difference, difference=difference,
        interval=(difference - 0.02, difference + 0.02), p_value=p, test="mcnemar_chi2",
        statistic=6.0, significant=significant, alpha=0.05, discordant=(40, 70),
    )  # fmt: skip


@pytest.mark.parametrize(
    "comparison, policy, constraints, min_gain, action, words",
    [
        (_cmp(True, 0.03), "manual", True, 0.0, "await_approval", "approve"),
        (_cmp(True, 0.03), "auto", True, 0.0, "promote", "+0.030"),
        (_cmp(True, 0.03), "auto", False, 0.0, "keep_champion", "constraints"),
        (_cmp(True, 0.03), "manual", False, 0.0, "keep_champion", "constraints"),
        (_cmp(True, 0.03), "auto", True, 0.05, "keep_champion", "min_gain 0.05"),
        (_cmp(False, 0.01, p=0.3), "auto", True, 0.0, "keep_champion", "p = 0.3"),
        (_cmp(False, -0.03), "auto", True, 0.0, "keep_champion", "worse"),
    ],
)
def test_decide_policies(
    comparison: Comparison,
    policy: str,
    constraints: bool,
    min_gain: float,
    action: str,
    words: str,
) -> None:
    d = decide(comparison, policy=policy, constraints_met=constraints, min_gain=min_gain)
    assert d.action == action
    assert words in d.reason
    assert d.promote == (action == "promote")
    assert d.comparison is comparison and d.policy == policy


def test_decide_rejects_unknown_policy_and_bad_min_gain() -> None:
    with pytest.raises(InputError) as exc:
        decide(_cmp(True, 0.03), policy="yolo")
    assert exc.value.field == "policy"
    assert "manual" in str(exc.value) and "auto" in str(exc.value)
    with pytest.raises(InputError) as exc:
        decide(_cmp(True, 0.03), min_gain=-0.1)
    assert exc.value.field == "min_gain"


# --------------------------------------------------------------------------- bad input

_Y = np.array([0, 1, 0, 1, 1, 0])
_P = np.array([0, 1, 1, 1, 0, 0])
_S = np.array([0.2, 0.8, 0.6, 0.7, 0.4, 0.1])


@pytest.mark.parametrize(
    "args, kwargs, field",
    [
        ((_Y, _P, _P[:5]), {}, "challenger_pred"),
        ((_Y, _P[:4], _P), {}, "champion_pred"),
        (([], [], []), {}, "y_true"),
        ((_Y, _P.astype(float) * np.array([1, 1, np.nan, 1, 1, 1]), _P), {}, "champion_pred"),
        ((_Y.astype(float) + np.array([0, 0, 0, np.inf, 0, 0]), _P, _P), {}, "y_true"),
        ((_Y, _P, np.array([0, 1, 7, 1, 0, 0])), {}, "challenger_pred"),
        ((_Y, np.array(["a", "b", "a", "b", "a", "b"]), _P), {}, "champion_pred"),
        ((_Y, _P, _P), {"metric": "f2"}, "metric"),
        ((_Y, _P, _P), {"task": "ranking"}, "task"),
        ((_Y, _P, _P), {"task": "regression", "metric": "accuracy"}, "metric"),
        ((_Y, _P, _P), {"alpha": 0.0}, "alpha"),
        ((_Y, _P, _P), {"alpha": 1.0}, "alpha"),
        ((_Y, _P, _P), {"alpha": 1.5}, "alpha"),
        ((_Y, _P, _P), {"n_boot": 0}, "n_boot"),
        ((_Y, _P, _P), {"metric": "roc_auc"}, "champion_score"),
        ((_Y, _P, _P), {"metric": "roc_auc", "champion_score": _S}, "challenger_score"),
        ((_Y, _P, _P), {"metric": "roc_auc", "champion_score": _S, "challenger_score": _S[:3]},
         "challenger_score"),
        ((_Y, _P, _P), {"metric": "log_loss", "champion_score": _S + 1, "challenger_score": _S},
         "champion_score"),
        ((np.zeros(6, int), _P, _P),
         {"metric": "roc_auc", "champion_score": _S, "challenger_score": _S}, "y_true"),
        ((np.array([0, 1, 2, 0, 1, 2]), _P, _P),
         {"metric": "roc_auc", "champion_score": _S, "challenger_score": _S}, "y_true"),
        ((_Y, None, _P), {}, "champion_pred"),
        ((_Y.reshape(2, 3), _P, _P), {}, "y_true"),
        ((np.array([0.5, 1.5]), np.array([0.5, None], dtype=object), np.array([1.0, 2.0])), {},
         "champion_pred"),
    ],
)  # fmt: skip
def test_bad_input_names_the_field(
    args: tuple[Any, ...], kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(InputError) as exc:
        compare(*args, **kwargs)
    assert exc.value.field == field, str(exc.value)
    assert exc.value.problem and exc.value.fix


def test_module_does_not_import_torch() -> None:
    code = "import sys, tunelens.tune.champion; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"
