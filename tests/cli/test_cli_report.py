"""`tunelens report`: files written whole or not at all, exit 2 with one line on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.cli.conftest import Invoke


def _table(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    x[:, 0] += shift
    p = 1 / (1 + np.exp(-(1.5 * x[:, 0] - x[:, 1])))
    frame = pd.DataFrame(x, columns=["x0", "x1", "x2"])
    frame["segment"] = rng.choice(["north", "south"], n)
    frame["y"] = (rng.random(n) < p).astype(int)
    frame["proba"] = p
    frame["pred"] = (p >= 0.5).astype(int)
    return frame


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    ref, cur = tmp_path / "ref.parquet", tmp_path / "cur.csv"
    _table(3000, 1).to_parquet(ref)
    _table(3000, 2, shift=0.6).to_csv(cur, index=False)
    return ref, cur


def _args(ref: Path, cur: Path, *extra: str | Path) -> list[str | Path]:
    return [
        "report",
        "--reference",
        ref,
        "--current",
        cur,
        "--target",
        "y",
        "--prediction",
        "pred",
        *extra,
    ]


def test_report_writes_html_and_json(cli: Invoke, files: tuple[Path, Path], tmp_path: Path) -> None:
    ref, cur = files
    out, js = tmp_path / "r" / "report.html", tmp_path / "r" / "report.json"
    result = cli(*_args(ref, cur, "--score", "proba", "--out", out, "--json", js))
    assert result.code == 0, result.err
    doc = json.loads(js.read_text())
    assert doc["schema"] == "tunelens.report/1" and doc["rows"] == {
        "reference": 3000,
        "current": 3000,
    }
    assert (
        doc["drift"]["features"]["x0"]["drifted"] and not doc["drift"]["features"]["x2"]["drifted"]
    )
    assert doc["columns"]["features"] == ["x0", "x1", "x2", "segment"]
    html = out.read_text()
    assert html.lstrip().lower().startswith("<!doctype html") and "x0" in html
    assert f"wrote {out}" in result.out and "accuracy" in result.out
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.html", "report.json"]


def test_json_to_stdout(cli: Invoke, files: tuple[Path, Path]) -> None:
    ref, cur = files
    result = cli(*_args(ref, cur, "--json", "-"))
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["task"] == "binary" and doc["curves"]["roc"] is None


def test_no_current_labels(cli: Invoke, tmp_path: Path, files: tuple[Path, Path]) -> None:
    ref, _ = files
    cur = tmp_path / "unlabelled.parquet"
    _table(2000, 5, shift=0.8).drop(columns="y").to_parquet(cur)
    js = tmp_path / "r.json"
    result = cli(*_args(ref, cur, "--score", "proba", "--json", js, "--no-current-labels"))
    assert result.code == 0, result.err
    doc = json.loads(js.read_text())
    assert doc["metrics"]["current"] == {} and doc["estimated"]["current"]["accuracy"] > 0.5


def _corrupt(tmp_path: Path, name: str, change: str) -> Path:
    frame = _table(500, 3)
    if change == "nan_target":
        frame = frame.astype({"y": float})
        frame.loc[10, "y"] = np.nan
    elif change == "text_score":
        frame = frame.astype({"proba": object})
        frame.loc[4, "proba"] = "high"
    elif change == "unseen_class":
        frame.loc[:3, "y"] = 2
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ("nan_target", "current['y']: 1 missing target values (first at row 11)"),
        ("text_score", "current['proba']: holds text ('high' at row 5)"),
        ("unseen_class", "current['y']: classes [2] never appear in the reference"),
    ],
)
def test_bad_content_exits_2_and_writes_nothing(
    cli: Invoke, files: tuple[Path, Path], tmp_path: Path, change: str, needle: str
) -> None:
    ref, _ = files
    cur = _corrupt(tmp_path, "bad.csv", change)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    existing = out_dir / "report.html"
    existing.write_text("old report")
    result = cli(
        *_args(ref, cur, "--score", "proba", "--out", existing, "--json", out_dir / "r.json")
    )
    assert result.code == 2
    assert result.err.count("\n") == 1 and result.err.startswith("error: ")
    assert needle in result.err
    assert existing.read_text() == "old report"
    assert [p.name for p in out_dir.iterdir()] == ["report.html"]


def test_missing_column_and_empty_file_exit_2(
    cli: Invoke, files: tuple[Path, Path], tmp_path: Path
) -> None:
    ref, cur = files
    result = cli(*_args(ref, cur, "--score", "probability", "--json", tmp_path / "r.json"))
    assert result.code == 2 and "reference['probability']: no such column" in result.err
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    result = cli(*_args(ref, empty, "--json", tmp_path / "r.json"))
    assert result.code == 2 and "empty.csv: file is empty" in result.err
    header_only = tmp_path / "header.csv"
    header_only.write_text("x0,x1,x2,segment,y,proba,pred\n")
    result = cli(*_args(ref, header_only, "--json", tmp_path / "r.json"))
    assert result.code == 2 and "header.csv" in result.err
    missing = cli(*_args(ref, tmp_path / "nope.parquet", "--json", tmp_path / "r.json"))
    assert missing.code == 2 and "no such file" in missing.err
    assert not (tmp_path / "r.json").exists()
    assert not list(tmp_path.glob(".*.tmp"))


def test_drift_options_override_a_column(
    cli: Invoke, files: tuple[Path, Path], tmp_path: Path
) -> None:
    ref, cur = files
    options = tmp_path / "drift.json"
    options.write_text(json.dumps({"x0": {"method": "psi", "threshold": 0.9}}))
    result = cli(*_args(ref, cur, "--json", "-", "--drift-options", options, "--large-n", "100"))
    assert result.code == 0, result.err
    x0 = json.loads(result.out)["drift"]["features"]["x0"]
    assert (x0["method"], x0["threshold"], x0["drifted"]) == ("psi", 0.9, False)
    options.write_text(json.dumps({"x0": {"method": "cosine"}}))
    bad = cli(*_args(ref, cur, "--json", "-", "--drift-options", options))
    assert bad.code == 2 and "x0" in bad.err and "method" in bad.err
    options.write_text("[1, 2]")
    bad = cli(*_args(ref, cur, "--json", "-", "--drift-options", options))
    assert bad.code == 2 and "expected a JSON object" in bad.err
