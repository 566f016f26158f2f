"""Tuning (``tunelens.tune/1``) and compression (``tunelens.compress/1``) results as pages.

`render_tune_html(doc, study)` and `render_compress_html(doc)` return one self-contained
HTML page each; `write_tune_html` and `write_compress_html` write it atomically. They share
the machinery of :mod:`tunelens.report.html`: plotly figures with inline JSON, plotly.js
embedded gzip+base64, a Content-Security-Policy that forbids any fetch, every document
string HTML-escaped, every key optional.

The tuning page shows the recommendation (feasible, or what blocked it), the optimisation
history (value per trial, best-so-far line, pruned trials marked), parameter importances,
the Pareto front, the trials table and the explanation sentences. The compression page
shows the baseline and every candidate (the chosen one highlighted, the others with why
they were not chosen) and metric against latency and size.
"""

from __future__ import annotations

import math
import os
import pathlib
import uuid
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tunelens.report.html import (
    _DASH,
    _dl,
    _esc,
    _Figures,
    _float,
    _go,
    _label,
    _layout,
    _make_subplots,
    _mapping,
    _num,
    _section,
    _seq,
    _table,
    _text,
)
from tunelens.report.html import _page as _html_page

if TYPE_CHECKING:
    import optuna

__all__ = [
    "render_compress_html",
    "render_tune_html",
    "write_compress_html",
    "write_tune_html",
]

_STATE_COLOURS = {
    "feasible": "#1c7ed6",
    "infeasible": "#f08c00",
    "pruned": "#adb5bd",
    "best": "#c92a2a",
}
_EPOCH_ATTR = "tunelens.epochs"
_ITER_ATTR = "tunelens.iterations"
_MIN_IMPORTANCE_TRIALS = 2
_TABLE_LIMIT = 500  # trials shown in the table before the rest is folded away

_EXTRA_CSS = """
.tunelens-report .tl-table tr.tl-chosen td{background:#ebfbee;font-weight:600}
.tunelens-report .tl-table tr.tl-pruned td{color:#868e96}
.tunelens-report .tl-ok{color:#2b8a3e;font-weight:600}
.tunelens-report .tl-bad{color:#c92a2a;font-weight:600}
.tunelens-report ol.tl-explain li{margin:.2em 0}
""".replace("\n", "")


# ---------------------------------------------------------------- small helpers


def _is_number(value: object) -> bool:
    return _float(value) is not None


def _value_text(value: object, digits: int = 4) -> str:
    """A number as text, a non-number as itself (e.g. a categorical parameter)."""
    if value is None:
        return _DASH
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        return _num(value, digits)
    return _text(value)


def _page(body: str, heading: str, uid: str, n_figures: int, full_page: bool) -> str:
    return _html_page(body, heading, uid, n_figures, full_page, css=_EXTRA_CSS)


def _footer(schema: str) -> str:
    return f'<footer class="tl-footer"><p>{_esc(schema)} · rendered by tunelens</p></footer>'


def _write(page: str, path: str | os.PathLike[str]) -> pathlib.Path:
    from tunelens._atomic import write_files

    target = pathlib.Path(path)
    write_files([(target, page.encode("utf-8"))])
    return target


def _check_doc(doc: object, name: str) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping):
        raise TypeError(f"{name} expects the result document (a mapping), got {type(doc)}")
    return doc


# ---------------------------------------------------------------- tune: objectives


class _Objectives:
    """The objective names and directions of a tune document (one, or several)."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        metric = doc.get("objectives") or doc.get("metric")
        directions = doc.get("directions") or doc.get("direction")
        names = [_text(m) for m in _seq(metric)] if isinstance(metric, list | tuple) else []
        if not names:
            names = [_text(metric) or "value"]
        dirs = (
            [_text(d) for d in _seq(directions)]
            if isinstance(directions, list | tuple)
            else [_text(directions) or "maximize"] * len(names)
        )
        dirs += ["maximize"] * (len(names) - len(dirs))
        self.names = names
        self.maximize = [d != "minimize" for d in dirs[: len(names)]]

    @property
    def multi(self) -> bool:
        return len(self.names) > 1

    def values(self, trial: Mapping[str, Any]) -> list[float | None]:
        """The trial's objective values (``None`` where absent or not finite)."""
        vals = trial.get("values")
        if isinstance(vals, list | tuple):
            out = [_float(v) for v in vals]
        else:
            out = [_float(trial.get("value"))]
        out += [None] * (len(self.names) - len(out))
        return out[: len(self.names)]

    def better(self, i: int, a: float, b: float) -> bool:
        return a > b if self.maximize[i] else a < b


def _trials(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    out = [_mapping(t) for t in _seq(doc.get("trials"))]
    return [t for t in out if t]


def _state(trial: Mapping[str, Any]) -> str:
    return _text(trial.get("state")).upper() or "UNKNOWN"


def _compute(trial: Mapping[str, Any]) -> float | None:
    """Epochs (or boosting iterations) a trial trained, when recorded."""
    for key in ("compute", "epochs", "iterations"):
        v = _float(trial.get(key))
        if v is not None:
            return v
    return None


def _compute_label(doc: Mapping[str, Any], study: optuna.Study | None) -> str:
    """What a trial's ``compute`` counts: epochs, boosting iterations, or either."""
    trials = _trials(doc)
    if any(_float(t.get("epochs")) is not None for t in trials):
        return "epochs trained"
    if any(_float(t.get("iterations")) is not None for t in trials):
        return "iterations built"
    if study is not None:
        attrs = {k for t in study.trials for k in t.user_attrs}
        if _EPOCH_ATTR in attrs:
            return "epochs trained"
        if _ITER_ATTR in attrs:
            return "iterations built"
    return "training compute (epochs or iterations)"


def _measure_text(value: object) -> str:
    """A measurement: whole numbers with thousands separators (bytes, FLOPs), else 4 digits."""
    x = _float(value)
    if x is not None and x.is_integer() and abs(x) < 1e15:
        return f"{int(x):,}"
    return _num(value, 4)


def _last_intermediate(study: optuna.Study | None, number: int) -> float | None:
    if study is None:
        return None
    try:
        trial = study.trials[number]
    except (IndexError, TypeError):
        return None
    if trial.number != number or not trial.intermediate_values:
        return None
    step = max(trial.intermediate_values)
    return _float(trial.intermediate_values[step])


def _is_feasible(trial: Mapping[str, Any]) -> bool:
    return bool(trial.get("feasible", _state(trial) == "COMPLETE"))


# ---------------------------------------------------------------- tune: sections


def _tune_header(doc: Mapping[str, Any], heading: str, obj: _Objectives, unit: str) -> str:
    trials = _trials(doc)
    states = [_state(t) for t in trials]
    counts = ", ".join(
        f"{states.count(s)} {s.lower()}" for s in ("COMPLETE", "PRUNED", "FAIL") if s in states
    )
    items: list[tuple[str, str]] = []
    if doc.get("study_name") is not None:
        items.append(("study", f"<code>{_esc(doc['study_name'])}</code>"))
    objectives = ", ".join(
        f"<code>{_esc(n)}</code> ({'maximize' if m else 'minimize'})"
        for n, m in zip(obj.names, obj.maximize, strict=True)
    )
    items.append(("objective" + ("s" if obj.multi else ""), objectives))
    priority = [_text(p) for p in _seq(doc.get("priority")) if p is not None]
    if obj.multi and priority:
        items.append(("priority", " then ".join(f"<code>{_esc(p)}</code>" for p in priority)))
    items.append(("trials", f"{len(trials)}" + (f" ({_esc(counts)})" if counts else "")))
    computes = [c for t in trials if (c := _compute(t)) is not None]
    if computes:
        items.append((f"{unit} (all trials)", _esc(_measure_text(sum(computes)))))
    constraints = [_mapping(c) for c in _seq(doc.get("constraints"))]
    if constraints:
        items.append(
            (
                "constraints",
                ", ".join(
                    f"<code>{_esc(_text(c.get('name')))} {_esc(_text(c.get('op')))} "
                    f"{_esc(_num(c.get('bound'), 6))}</code>"
                    for c in constraints
                ),
            )
        )
    space = _mapping(doc.get("space"))
    if space:
        items.append((f"space ({len(space)})", _space_text(space)))
    return f'<header class="tl-header"><h1>{_esc(heading)}</h1>{_dl(items)}</header>'


def _space_text(space: Mapping[str, Any]) -> str:
    parts = []
    for name, raw in space.items():
        d = _mapping(raw)
        kind = _text(d.get("kind"))
        if kind == "categorical" or "choices" in d:
            rng = "{" + ", ".join(_value_text(c) for c in _seq(d.get("choices"))) + "}"
        elif d:
            rng = f"[{_value_text(d.get('low'))}, {_value_text(d.get('high'))}]"
            if d.get("log"):
                rng += " log"
        else:
            rng = _text(raw)
        parts.append(f"<code>{_esc(name)}</code> {_esc(rng)}")
    return "; ".join(parts)


def _params_text(params: Mapping[str, Any]) -> str:
    if not params:
        return _DASH
    return ", ".join(
        f"<code>{_esc(k)}</code>=<code>{_esc(_value_text(v))}</code>" for k, v in params.items()
    )


def _tune_summary(doc: Mapping[str, Any], obj: _Objectives, unit: str) -> str:
    best = _mapping(doc.get("best"))
    points: list[str] = []
    if not best:
        points.append("No trial completed: there is nothing to recommend.")
    else:
        vals = obj.values(best)
        shown = ", ".join(
            f"<code>{_esc(n)}</code> = <b>{_esc(_num(v, 6))}</b>"
            for n, v in zip(obj.names, vals, strict=True)
        )
        points.append(f"Recommended: trial <b>#{_esc(_text(best.get('number')))}</b>, {shown}.")
        points.append("Parameters: " + _params_text(_mapping(best.get("params"))) + ".")
        meas = _mapping(best.get("measurements"))
        if meas:
            points.append(
                "Measurements: "
                + ", ".join(
                    f"<code>{_esc(k)}</code> = {_esc(_measure_text(v))}" for k, v in meas.items()
                )
                + "."
            )
        compute = _compute(best)
        if compute is not None:
            points.append(f"{unit.capitalize()} by this trial: {_esc(_measure_text(compute))}.")
        feasible = doc.get("feasible")
        if feasible is True or (feasible is None and not doc.get("blocked_by")):
            if _seq(doc.get("constraints")):
                points.append('<span class="tl-ok">Feasible</span>: it meets every constraint.')
        else:
            points.append(
                '<span class="tl-bad">Not feasible</span>: no trial met every constraint; '
                "this is the closest one."
            )
    body = "<ul>" + "".join(f"<li>{p}</li>" for p in points) + "</ul>"
    blocked = [_mapping(b) for b in _seq(doc.get("blocked_by"))]
    if blocked:
        rows = [
            (
                [
                    f"<code>{_esc(_text(b.get('constraint')) or _constraint_text(b))}</code>",
                    _esc(_num(b.get("value"), 6)),
                    _esc(_num(b.get("bound"), 6)),
                    _esc(_num(b.get("violation"), 4)),
                ],
                "tl-flag",
            )
            for b in blocked
        ]
        body += "<h3>Blocked by</h3>" + _table(
            ["constraint", "measured", "bound", "misses by"], rows
        )
    return _section("summary", "Recommendation", body)


def _constraint_text(c: Mapping[str, Any]) -> str:
    return f"{_text(c.get('name'))} {_text(c.get('op'))} {_num(c.get('bound'), 6)}"


def _explanation(doc: Mapping[str, Any]) -> str:
    sentences = [_text(s) for s in _seq(doc.get("explanation")) if s is not None]
    if not sentences:
        return ""
    items = "".join(f"<li>{_esc(s)}</li>" for s in sentences)
    return _section("explanation", "Explanation", f'<ol class="tl-explain">{items}</ol>')


def _trials_table(doc: Mapping[str, Any], obj: _Objectives, unit: str) -> str:
    trials = _trials(doc)
    if "trials" not in doc:
        return ""
    best_number = _mapping(doc.get("best")).get("number")
    pareto = {p for p in _seq(doc.get("pareto")) if isinstance(p, int)}
    param_names = list(dict.fromkeys(str(k) for t in trials for k in _mapping(t.get("params"))))
    meas_names = list(
        dict.fromkeys(str(k) for t in trials for k in _mapping(t.get("measurements")))
    )
    has_compute = any(_compute(t) is not None for t in trials)
    headers = ["#", "state", *obj.names, *param_names, *meas_names, "feasible"]
    if has_compute:
        headers.append(unit)
    if pareto:
        headers.append("Pareto")
    rows = []
    for t in trials:
        number = t.get("number")
        state = _state(t)
        params = _mapping(t.get("params"))
        meas = _mapping(t.get("measurements"))
        feasible = t.get("feasible")
        violations = {k: _float(v) for k, v in _mapping(t.get("violations")).items()}
        missed = [k for k, v in violations.items() if v is None or v > 0]
        if state != "COMPLETE":
            feas = _DASH
        elif feasible:
            feas = '<span class="tl-ok">yes</span>'
        else:
            feas = '<span class="tl-bad">no</span>'
            if missed:
                feas += " (" + ", ".join(f"<code>{_esc(m)}</code>" for m in missed) + ")"
        cells = [
            _esc(_text(number)),
            _esc(state.lower())
            + (f" ({_esc(_text(t.get('error')))})" if t.get("error") is not None else ""),
            *(_esc(_num(v, 6)) for v in obj.values(t)),
            *(_esc(_value_text(params.get(p))) for p in param_names),
            *(_esc(_measure_text(meas.get(m))) for m in meas_names),
            feas,
        ]
        if has_compute:
            cells.append(_esc(_measure_text(_compute(t))))
        if pareto:
            cells.append("yes" if number in pareto else "")
        if number is not None and number == best_number:
            cls = "tl-chosen"
        elif state == "PRUNED":
            cls = "tl-pruned"
        elif state == "COMPLETE" and not feasible:
            cls = "tl-flag"
        else:
            cls = ""
        rows.append((cells, cls))
    table = _table(headers, rows[:_TABLE_LIMIT], "tl-trials")
    if len(rows) > _TABLE_LIMIT:
        rest = _table(headers, rows[_TABLE_LIMIT:], "tl-trials")
        table += f"<details><summary>and {len(rows) - _TABLE_LIMIT} more</summary>{rest}</details>"
    note = (
        "The recommended trial is highlighted; infeasible trials are tinted and name the "
        "constraints they miss; pruned trials are greyed."
    )
    return _section("trials", "Trials", table, note)


# ---------------------------------------------------------------- tune: figures


def _fig_history(doc: Mapping[str, Any], obj: _Objectives, study: optuna.Study | None) -> Any:
    trials = _trials(doc)
    complete = [t for t in trials if _state(t) == "COMPLETE"]
    if not complete:
        return None
    go = _go()
    n = len(obj.names)
    fig = (
        _make_subplots(rows=n, cols=1, shared_xaxes=True, vertical_spacing=0.08) if n > 1 else None
    )
    target: Any = fig if fig is not None else go.Figure()
    constrained = bool(_seq(doc.get("constraints")))
    for i, name in enumerate(obj.names):
        pos = {"row": i + 1, "col": 1} if fig is not None else {}
        groups: dict[str, tuple[list[int], list[float]]] = {
            "feasible": ([], []),
            "infeasible": ([], []),
        }
        ordered: list[tuple[int, float, bool]] = []
        for t in complete:
            number, v = t.get("number"), obj.values(t)[i]
            if not isinstance(number, int) or v is None:
                continue
            key = "feasible" if _is_feasible(t) else "infeasible"
            groups[key][0].append(number)
            groups[key][1].append(v)
            ordered.append((number, v, key == "feasible"))
        for key, (xs, ys) in groups.items():
            if not xs:
                continue
            label = "complete" if not constrained else f"complete, {key}"
            target.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="markers",
                    name=label,
                    legendgroup=key,
                    showlegend=i == 0,
                    marker={"color": _STATE_COLOURS[key], "size": 7},
                    hovertemplate=f"trial %{{x}}<br>{_label(name)} %{{y:.6g}}<extra>{key}</extra>",
                ),
                **pos,
            )
        # best so far, over feasible trials when there are constraints and any is feasible
        ordered.sort()
        only_feasible = constrained and any(ok for _, _, ok in ordered)
        bx: list[int] = []
        by: list[float] = []
        best: float | None = None
        for number, v, ok in ordered:
            if (ok or not only_feasible) and (best is None or obj.better(i, v, best)):
                best = v
            if best is not None:
                bx.append(number)
                by.append(best)
        if bx:
            target.add_trace(
                go.Scatter(
                    x=bx,
                    y=by,
                    mode="lines",
                    line={"color": _STATE_COLOURS["best"], "shape": "hv", "width": 2},
                    name="best so far" + (" (feasible)" if only_feasible else ""),
                    legendgroup="best",
                    showlegend=i == 0,
                    hovertemplate=f"trial %{{x}}<br>best %{{y:.6g}}<extra>{_label(name)}</extra>",
                ),
                **pos,
            )
        pruned = [t for t in trials if _state(t) == "PRUNED" and isinstance(t.get("number"), int)]
        if pruned and i == 0:
            values = [v for _, v, _ in ordered]
            floor = (min(values) if obj.maximize[i] else max(values)) if values else 0.0
            px, py, text = [], [], []
            for t in pruned:
                last = _float(t.get("last_value"))
                if last is None:
                    last = _last_intermediate(study, int(t["number"]))
                compute = _compute(t)
                at = f" after {_num(compute, 6)} epochs" if compute is not None else ""
                if last is None:
                    px.append(int(t["number"]))
                    py.append(floor)
                    text.append(f"pruned{at} (no value recorded; drawn at the worst value)")
                else:
                    px.append(int(t["number"]))
                    py.append(last)
                    text.append(f"pruned{at}; last reported {_num(last, 6)}")
            target.add_trace(
                go.Scatter(
                    x=px,
                    y=py,
                    mode="markers",
                    name="pruned",
                    marker={"color": _STATE_COLOURS["pruned"], "symbol": "x", "size": 8},
                    text=text,
                    hovertemplate="trial %{x}<br>%{text}<extra>pruned</extra>",
                ),
                **pos,
            )
        if fig is not None:
            fig.update_yaxes(title_text=_label(name), row=i + 1, col=1)
    if fig is not None:
        fig.update_xaxes(title_text="trial", row=n, col=1)
        fig.update_layout(
            title={"text": "Optimisation history", "x": 0.02, "xanchor": "left"},
            height=max(400, 260 * n),
            margin={"l": 60, "r": 20, "t": 60, "b": 50},
            legend={"orientation": "h", "y": -0.12},
        )
        return fig
    return _layout(target, "Optimisation history", "trial", _label(obj.names[0]))


def _importances_from_study(
    study: optuna.Study, obj: _Objectives
) -> tuple[dict[str, list[float]], str] | str:
    """Importance per parameter (one value per objective) from Optuna, or why not."""
    import optuna

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < _MIN_IMPORTANCE_TRIALS:
        return f"only {len(complete)} complete trial(s) in the study; importances need at least 2"
    out: dict[str, list[float]] = {}
    multi = len(study.directions) > 1
    try:
        for i in range(len(obj.names)):
            with warnings.catch_warnings():
                # the default evaluator warns that a target is minimised: ours is signed so
                warnings.simplefilter("ignore")
                imp = optuna.importance.get_param_importances(
                    study, target=_values_target(i, obj.maximize[i]) if multi else None
                )
            for k, v in imp.items():
                out.setdefault(str(k), [0.0] * len(obj.names))[i] = float(v)
    except (RuntimeError, ValueError, IndexError) as err:
        return f"Optuna could not compute importances: {err}"
    if not out:
        return "no parameter varied across the complete trials"
    return out, (
        "optuna.importance.get_param_importances with its default evaluator, "
        "over the complete trials of the study"
    )


def _values_target(i: int, maximize: bool) -> Any:
    sign = -1.0 if maximize else 1.0  # evaluators may rank low targets as good

    def target(t: Any) -> float:
        return sign * float(t.values[i])

    return target


def _rank(xs: Sequence[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda k: xs[k])
    ranks = [0.0] * len(xs)
    j = 0
    while j < len(order):
        k = j
        while k + 1 < len(order) and xs[order[k + 1]] == xs[order[j]]:
            k += 1
        for m in range(j, k + 1):
            ranks[order[m]] = (j + k) / 2
        j = k + 1
    return ranks


def _association(xs: Sequence[Any], ys: Sequence[float]) -> float:
    """|Spearman rho| for numbers; the correlation ratio (eta) for categories."""
    if all(_is_number(x) for x in xs):
        rx, ry = _rank([float(x) for x in xs]), _rank(ys)
        mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
        sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
        sxx = sum((a - mx) ** 2 for a in rx)
        syy = sum((b - my) ** 2 for b in ry)
        return 0.0 if sxx == 0 or syy == 0 else abs(sxy) / math.sqrt(sxx * syy)
    mean = sum(ys) / len(ys)
    total = sum((y - mean) ** 2 for y in ys)
    if total == 0:
        return 0.0
    groups: dict[str, list[float]] = {}
    for x, y in zip(xs, ys, strict=True):
        groups.setdefault(repr(x), []).append(y)
    between = sum(len(g) * (sum(g) / len(g) - mean) ** 2 for g in groups.values())
    return math.sqrt(between / total)


def _importances_fallback(
    doc: Mapping[str, Any], obj: _Objectives
) -> tuple[dict[str, list[float]], str] | str:
    trials = [t for t in _trials(doc) if _state(t) == "COMPLETE"]
    names = list(dict.fromkeys(str(k) for t in trials for k in _mapping(t.get("params"))))
    out: dict[str, list[float]] = {n: [0.0] * len(obj.names) for n in names}
    usable = 0
    for i in range(len(obj.names)):
        scores: dict[str, float] = {}
        for name in names:
            pairs = [
                (_mapping(t.get("params"))[name], v)
                for t in trials
                if name in _mapping(t.get("params")) and (v := obj.values(t)[i]) is not None
            ]
            if len(pairs) >= 3:
                scores[name] = _association([p for p, _ in pairs], [v for _, v in pairs])
        total = sum(scores.values())
        if total > 0:
            usable += 1
            for name, s in scores.items():
                out[name][i] = s / total
    if not usable:
        return "too few complete trials with varying values to relate parameters to the objective"
    return out, (
        "rank correlation of each parameter with the objective over the complete trials "
        "(|Spearman| for numbers, correlation ratio for categories), normalised to sum to 1; "
        "a rough guide computed without the study"
    )


def _importances(
    doc: Mapping[str, Any], obj: _Objectives, study: optuna.Study | None, figures: _Figures
) -> str:
    notes: list[str] = []
    result: tuple[dict[str, list[float]], str] | str
    if study is not None:
        result = _importances_from_study(study, obj)
        if isinstance(result, str):
            notes.append(result)
            result = _importances_fallback(doc, obj)
    else:
        result = _importances_fallback(doc, obj)
    if isinstance(result, str):
        notes.append(result)
        return _section(
            "importances",
            "Parameter importances",
            '<p class="tl-empty">Not shown: ' + _esc("; ".join(notes)) + ".</p>",
        )
    values, method = result
    order = sorted(values, key=lambda k: -max(values[k]))
    go = _go()
    traces = []
    for i, name in enumerate(obj.names):
        traces.append(
            go.Bar(
                x=[values[k][i] for k in order][::-1],
                y=[_label(k) for k in order][::-1],
                orientation="h",
                name=_label(name),
                hovertemplate="%{y}: %{x:.3f}<extra>" + _label(name) + "</extra>",
            )
        )
    fig = go.Figure(traces)
    _layout(fig, "Parameter importances", "importance", "parameter", barmode="group")
    fig.update_layout(height=max(260, 80 + 40 * len(order) * len(obj.names)))
    rows = [
        ([f"<code>{_esc(k)}</code>", *(_esc(_num(v, 3)) for v in values[k])], "") for k in order
    ]
    table = _table(["parameter", *obj.names], rows)
    note = "Method: " + _esc(method) + "."
    if notes:
        note += " (" + _esc("; ".join(notes)) + ".)"
    return _section(
        "importances",
        "Parameter importances",
        figures.add(fig, "Parameter importances") + table,
        note,
    )


def _pareto_axes(doc: Mapping[str, Any], obj: _Objectives) -> tuple[str, str, Any, Any] | None:
    """(x name, y name, x getter, y getter) for the front."""
    if obj.multi:

        def ox(t: Mapping[str, Any]) -> float | None:
            return obj.values(t)[0]

        def oy(t: Mapping[str, Any]) -> float | None:
            return obj.values(t)[1]

        return obj.names[0], obj.names[1], ox, oy
    constraints = [_mapping(c) for c in _seq(doc.get("constraints"))]
    if not constraints:
        return None
    c = constraints[0]
    cname = _text(c.get("name"))

    def cx(t: Mapping[str, Any]) -> float | None:
        meas = _mapping(t.get("measurements"))
        if cname in meas:
            return _float(meas[cname])
        return obj.values(t)[0] if cname == obj.names[0] else None

    def cy(t: Mapping[str, Any]) -> float | None:
        return obj.values(t)[0]

    return cname, obj.names[0], cx, cy


def _fig_pareto(doc: Mapping[str, Any], obj: _Objectives) -> Any:
    axes = _pareto_axes(doc, obj)
    if axes is None:
        return None
    xname, yname, gx, gy = axes
    trials = [t for t in _trials(doc) if _state(t) == "COMPLETE"]
    pareto = {p for p in _seq(doc.get("pareto")) if isinstance(p, int)}
    best_number = _mapping(doc.get("best")).get("number")
    groups: dict[str, list[Mapping[str, Any]]] = {"feasible": [], "infeasible": [], "front": []}
    for t in trials:
        if gx(t) is None or gy(t) is None:
            continue
        if t.get("number") in pareto:
            groups["front"].append(t)
        else:
            groups["feasible" if _is_feasible(t) else "infeasible"].append(t)
    if not any(groups.values()):
        return None
    go = _go()
    fig = go.Figure()
    styles = {
        "feasible": {"color": _STATE_COLOURS["feasible"], "size": 7, "opacity": 0.6},
        "infeasible": {"color": _STATE_COLOURS["infeasible"], "size": 7, "symbol": "x"},
        "front": {"color": _STATE_COLOURS["best"], "size": 10, "symbol": "diamond"},
    }
    names = {"feasible": "feasible", "infeasible": "infeasible", "front": "Pareto front"}
    for key, ts in groups.items():
        if not ts:
            continue
        if key == "front":
            ts = sorted(ts, key=lambda t: gx(t))
        fig.add_trace(
            go.Scatter(
                x=[gx(t) for t in ts],
                y=[gy(t) for t in ts],
                mode="lines+markers" if key == "front" else "markers",
                line={"shape": "hv", "color": _STATE_COLOURS["best"], "width": 1},
                name=names[key],
                marker=styles[key],
                customdata=[t.get("number") for t in ts],
                hovertemplate=(
                    f"trial %{{customdata}}<br>{_label(xname)} %{{x:.6g}}"
                    f"<br>{_label(yname)} %{{y:.6g}}<extra>{names[key]}</extra>"
                ),
            )
        )
    best = next((t for t in trials if t.get("number") == best_number), None)
    if best is not None and gx(best) is not None and gy(best) is not None:
        fig.add_trace(
            go.Scatter(
                x=[gx(best)],
                y=[gy(best)],
                mode="markers",
                name="recommended",
                marker={
                    "color": "rgba(0,0,0,0)",
                    "size": 18,
                    "line": {"color": "#212529", "width": 2},
                },
                hovertemplate=f"recommended: trial {best_number}<extra></extra>",
            )
        )
    constraints = [_mapping(c) for c in _seq(doc.get("constraints"))]
    if not obj.multi and constraints and _float(constraints[0].get("bound")) is not None:
        fig.add_vline(
            x=_float(constraints[0].get("bound")),
            line={"color": "#868e96", "dash": "dash", "width": 1},
            annotation_text=_label(_constraint_text(constraints[0])),
        )
    title = "Pareto front" if obj.multi else f"Pareto front: {yname} against {xname}"
    return _layout(fig, _label(title), _label(xname), _label(yname))


# ---------------------------------------------------------------- public API: tune


def render_tune_html(
    doc: Mapping[str, Any],
    study: optuna.Study | None = None,
    *,
    title: str | None = None,
    full_page: bool = True,
) -> str:
    """Render a ``tunelens.tune/1`` document (``TuneResult.to_dict()``) as HTML.

    Args:
        doc: the tuning result document. Every key is optional; a section whose data is
            absent is left out (or says why it is empty). Single- and multi-objective
            documents (``metric`` a list, trials with ``values``) are both accepted.
        study: the Optuna study the document came from (``TuneResult.study``). With it,
            parameter importances come from ``optuna.importance.get_param_importances``
            (when it has at least 2 complete trials) and pruned trials are drawn at their
            last reported value; without it, importances are a rank-correlation fallback.
        title: the page heading; by default ``"tunelens tuning report (STUDY)"``.
        full_page: a whole page (``True``) or one ``<div>`` to insert into a page.

    Returns:
        The HTML text. It loads nothing over the network.

    Raises:
        TypeError: ``doc`` is not a mapping.

    Example:
        >>> page = render_tune_html({"metric": "accuracy", "trials": []})
        >>> page.startswith("<!DOCTYPE html>")
        True
    """
    doc = _check_doc(doc, "render_tune_html")
    obj = _Objectives(doc)
    name = _text(doc.get("study_name"))
    heading = (
        title if title is not None else "tunelens tuning report" + (f" ({name})" if name else "")
    )
    uid = f"tl-{uuid.uuid4().hex[:12]}"
    figures = _Figures(uid)
    unit = _compute_label(doc, study)
    body = [
        _tune_header(doc, heading, obj, unit),
        _tune_summary(doc, obj, unit),
        _explanation(doc),
    ]
    history = figures.add(_fig_history(doc, obj, study), "Optimisation history")
    body.append(
        _section(
            "history",
            "Optimisation history",
            history or '<p class="tl-empty">No complete trial to draw.</p>',
            "Value of each trial in the order they ran; the line is the best so far; "
            "pruned trials are crosses.",
        )
    )
    if "trials" in doc:
        body.append(_importances(doc, obj, study, figures))
    pareto_fig = _fig_pareto(doc, obj)
    if pareto_fig is not None:
        axes_note = (
            "Complete trials on the first two objectives; the front is the set no trial beats "
            "on both."
            if obj.multi
            else "Complete trials on the objective against the first constraint's measurement; "
            "the front is the set of feasible trials no other feasible trial beats on both."
        )
        body.append(
            _section("pareto", "Pareto front", figures.add(pareto_fig, "Pareto front"), axes_note)
        )
    body.append(_trials_table(doc, obj, unit))
    body.append(_footer(_text(doc.get("schema")) or "tunelens.tune/1"))
    body.append(figures.scripts())
    return _page("".join(b for b in body if b), heading, uid, len(figures), full_page)


def write_tune_html(
    doc: Mapping[str, Any],
    path: str | os.PathLike[str],
    study: optuna.Study | None = None,
    *,
    title: str | None = None,
) -> pathlib.Path:
    """Write `render_tune_html(doc, study)` to ``path`` atomically.

    Args:
        doc: the ``tunelens.tune/1`` document.
        path: the file to write; its folder is created if missing.
        study: the Optuna study, for importances (optional).
        title: the page heading.

    Returns:
        ``path`` as a `pathlib.Path`.

    Raises:
        TypeError: ``doc`` is not a mapping.
        OSError: the file could not be written (``path`` is then untouched).
    """
    return _write(render_tune_html(doc, study, title=title), path)


# ---------------------------------------------------------------- compress


_COMPRESS_COLUMNS = (
    ("metric", "metric", 6),
    ("drop", "drop", 4),
    ("latency_p50_ms", "p50 ms", 4),
    ("latency_p99_ms", "p99 ms", 4),
    ("model_bytes", "bytes", 6),
    ("speedup", "speedup", 3),
    ("size_ratio", "size ratio", 3),
)
_LOWER_IS_BETTER = ("mse", "mae", "rmse", "log_loss", "loss", "error")


def _settings_text(settings: object) -> str:
    m = _mapping(settings)
    if m:
        return ", ".join(f"{_esc(k)}=<code>{_esc(_value_text(v))}</code>" for k, v in m.items())
    return _esc(_text(settings)) if settings not in (None, {}, []) else _DASH


def _cell(key: str, value: object, digits: int) -> str:
    return _esc(_measure_text(value) if key == "model_bytes" else _num(value, digits))


def _candidates(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c for c in (_mapping(x) for x in _seq(doc.get("candidates"))) if c]


def _chosen_name(doc: Mapping[str, Any]) -> str | None:
    """The chosen candidate's name; ``None`` when the original is kept (``improved`` false)."""
    if doc.get("improved") is False:
        return None
    chosen = doc.get("chosen")
    if isinstance(chosen, Mapping):
        return _text(chosen.get("name")) or None
    if isinstance(chosen, str):
        return chosen
    return None


def _higher_is_better(doc: Mapping[str, Any]) -> bool:
    """From the records (``drop`` is worse-positive) or else from the metric's name."""
    base = _float(_mapping(doc.get("baseline")).get("metric"))
    for c in _candidates(doc):
        value, drop = _float(c.get("metric")), _float(c.get("drop"))
        if base is not None and value is not None and drop and value != base:
            return (base - value) * drop > 0
    return _text(doc.get("metric")).lower() not in _LOWER_IS_BETTER


def _compress_header(doc: Mapping[str, Any], heading: str) -> str:
    items: list[tuple[str, str]] = []
    if doc.get("metric") is not None:
        items.append(("metric", f"<code>{_esc(doc['metric'])}</code>"))
    if doc.get("max_drop") is not None:
        items.append(("largest drop allowed", _esc(_num(doc.get("max_drop"), 4))))
    constraints = [_mapping(c) for c in _seq(doc.get("constraints"))]
    if constraints:
        items.append(
            (
                "constraints",
                ", ".join(f"<code>{_esc(_constraint_text(c))}</code>" for c in constraints),
            )
        )
    base = _mapping(doc.get("baseline"))
    if base:
        parts = [
            f"{label} {_cell(key, base.get(key), digits)}"
            for key, label, digits in _COMPRESS_COLUMNS
            if key in base and key not in ("drop", "speedup", "size_ratio")
        ]
        if base.get("runtime") is not None:
            parts.append(f"runtime {_esc(base['runtime'])}")
        items.append(("original", ", ".join(parts) or _DASH))
    items.append(("candidates", str(len(_candidates(doc)))))
    return f'<header class="tl-header"><h1>{_esc(heading)}</h1>{_dl(items)}</header>'


def _compress_summary(doc: Mapping[str, Any]) -> str:
    chosen = _mapping(doc.get("chosen"))
    name = _chosen_name(doc)
    cands = _candidates(doc)
    if name is not None and not chosen:
        chosen = next((c for c in cands if _text(c.get("name")) == name), {})
    points: list[str] = []
    if name is None:
        points.append(
            '<span class="tl-bad">No candidate chosen</span>: none kept the metric within '
            "the largest drop allowed and met every constraint; keep the original."
        )
        why = _text(chosen.get("why_not")) if doc.get("improved") is False else ""
        if why:
            points.append(f"The original itself misses: {_esc(why)}.")
    else:
        details = ", ".join(
            f"{label} <b>{_cell(key, chosen.get(key), digits)}</b>"
            for key, label, digits in _COMPRESS_COLUMNS
            if chosen.get(key) is not None
        )
        method = _text(chosen.get("method"))
        runtime = _text(chosen.get("runtime"))
        how = ", ".join(_esc(x) for x in (method, runtime) if x)
        points.append(
            f"Chosen: <code>{_esc(name)}</code>"
            + (f" ({how})" if how else "")
            + (f": {details}" if details else "")
            + "."
        )
    for note in [*_seq(doc.get("notes")), *_seq(doc.get("explanation"))]:
        if note is not None:
            points.append(_esc(_text(note)))
    return _section(
        "summary", "Result", "<ul>" + "".join(f"<li>{p}</li>" for p in points) + "</ul>"
    )


def _why_not(c: Mapping[str, Any], chosen: Mapping[str, Any]) -> str:
    """The record's ``why_not``; for a feasible one left out, how it compares to the choice."""
    why = _text(c.get("why_not"))
    if why or not c.get("feasible") or not chosen:
        return why
    lat, lat_c = _float(c.get("latency_p50_ms")), _float(chosen.get("latency_p50_ms"))
    size, size_c = _float(c.get("model_bytes")), _float(chosen.get("model_bytes"))
    if lat is not None and lat_c is not None and lat > lat_c:
        return f"feasible, but slower than the chosen one (p50 {_num(lat)} vs {_num(lat_c)} ms)"
    if size is not None and size_c is not None and size > size_c:
        return (
            f"feasible, but larger than the chosen one "
            f"({_measure_text(size)} vs {_measure_text(size_c)} bytes)"
        )
    return "feasible; not chosen"


def _compress_table(doc: Mapping[str, Any]) -> str:
    name = _chosen_name(doc)
    cands = _candidates(doc)
    chosen_rec = _mapping(doc.get("chosen")) if name is not None else {}
    if name is not None and not chosen_rec:
        chosen_rec = next((c for c in cands if _text(c.get("name")) == name), {})
    base = _mapping(doc.get("baseline"))
    has_runtime = any(c.get("runtime") is not None for c in [*cands, base])
    headers = ["name", "method", *(["runtime"] if has_runtime else []), "settings"]
    headers += [h for _, h, _ in _COMPRESS_COLUMNS]
    headers += ["feasible", "why not chosen"]
    rows: list[tuple[list[str], str]] = []
    if base:
        rows.append(
            (
                [
                    "<b>original</b>",
                    _esc(_text(base.get("method")) or _DASH),
                    *([_esc(_text(base.get("runtime")) or _DASH)] if has_runtime else []),
                    _settings_text(base.get("settings")),
                    *(_cell(k, base.get(k), d) for k, _, d in _COMPRESS_COLUMNS),
                    _DASH,
                    "",
                ],
                "",
            )
        )
    for c in cands:
        cname = _text(c.get("name"))
        chosen = name is not None and cname == name
        feasible = c.get("feasible")
        rows.append(
            (
                [
                    f"<code>{_esc(cname)}</code>" + (" <b>(chosen)</b>" if chosen else ""),
                    _esc(_text(c.get("method")) or _DASH),
                    *([_esc(_text(c.get("runtime")) or _DASH)] if has_runtime else []),
                    _settings_text(c.get("settings")),
                    *(_cell(k, c.get(k), d) for k, _, d in _COMPRESS_COLUMNS),
                    '<span class="tl-ok">yes</span>'
                    if feasible
                    else ('<span class="tl-bad">no</span>' if feasible is not None else _DASH),
                    "" if chosen else _esc(_why_not(c, chosen_rec)),
                ],
                "tl-chosen" if chosen else ("tl-flag" if feasible is False else ""),
            )
        )
    note = (
        "drop: how much worse the candidate's metric is than the original's (positive is "
        "worse); speedup: the original's p50 latency over the candidate's; size ratio: the "
        "original's bytes over the candidate's (2 = half the size). The chosen candidate is "
        "highlighted; the others say why they were not chosen."
    )
    return _section("candidates", "Original and candidates", _table(headers, rows), note)


def _fig_compress(doc: Mapping[str, Any]) -> Any:
    base = _mapping(doc.get("baseline"))
    cands = _candidates(doc)
    name = _chosen_name(doc)
    metric = _text(doc.get("metric")) or "metric"
    points = [("original", base, "original")] if base else []
    for c in cands:
        cname = _text(c.get("name"))
        kind = (
            "chosen"
            if name is not None and cname == name
            else ("feasible" if c.get("feasible") else "infeasible")
        )
        points.append((cname, c, kind))
    lat_key = "latency_p50_ms"
    if not any(_float(p.get(lat_key)) is not None for _, p, _ in points):
        lat_key = "latency_p99_ms"
    usable = [
        p
        for p in points
        if _float(p[1].get("metric")) is not None
        and (_float(p[1].get(lat_key)) is not None or _float(p[1].get("model_bytes")) is not None)
    ]
    if not usable:
        return None
    go = _go()
    fig = _make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        subplot_titles=(_label(f"{metric} against latency"), _label(f"{metric} against size")),
    )
    styles = {
        "original": {"color": "#212529", "size": 12, "symbol": "square"},
        "chosen": {"color": _STATE_COLOURS["best"], "size": 16, "symbol": "star"},
        "feasible": {"color": _STATE_COLOURS["feasible"], "size": 9},
        "infeasible": {"color": _STATE_COLOURS["pruned"], "size": 9, "symbol": "x"},
    }
    in_legend: set[str] = set()
    for kind in ("original", "feasible", "infeasible", "chosen"):
        group = [p for p in usable if p[2] == kind]
        if not group:
            continue
        for col, key, unit in ((1, lat_key, "ms"), (2, "model_bytes", "bytes")):
            sel = [p for p in group if _float(p[1].get(key)) is not None]
            if not sel:
                continue
            fig.add_trace(
                go.Scatter(
                    x=[_float(p[1].get(key)) for p in sel],
                    y=[_float(p[1].get("metric")) for p in sel],
                    mode="markers",
                    name=kind,
                    legendgroup=kind,
                    showlegend=kind not in in_legend,
                    marker=styles[kind],
                    text=[_label(p[0]) for p in sel],
                    hovertemplate=(
                        f"%{{text}}<br>{_label(metric)} %{{y:.6g}}<br>%{{x:.4g}} {unit}"
                        f"<extra>{kind}</extra>"
                    ),
                ),
                row=1,
                col=col,
            )
            in_legend.add(kind)
    floor_base = _float(base.get("metric"))
    max_drop = _float(doc.get("max_drop"))
    if floor_base is not None and max_drop is not None:
        minimize = not _higher_is_better(doc)
        fig.add_hline(
            y=floor_base + max_drop if minimize else floor_base - max_drop,
            line={"color": "#868e96", "dash": "dash", "width": 1},
            annotation_text="original " + ("+" if minimize else "-") + " max_drop",
        )
    fig.update_xaxes(title_text=f"{lat_key.replace('_', ' ')}", type="log", row=1, col=1)
    fig.update_xaxes(title_text="model bytes", type="log", row=1, col=2)
    fig.update_yaxes(title_text=_label(metric), row=1, col=1)
    fig.update_layout(
        title={"text": "Metric, latency and size", "x": 0.02, "xanchor": "left"},
        height=420,
        margin={"l": 60, "r": 20, "t": 80, "b": 50},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def render_compress_html(
    doc: Mapping[str, Any], *, title: str | None = None, full_page: bool = True
) -> str:
    """Render a ``tunelens.compress/1`` document (``CompressResult.to_dict()``) as HTML.

    Args:
        doc: the compression result: ``metric``, ``max_drop``, ``baseline``, ``chosen``
            (a candidate or ``null``) and ``candidates`` (name, method, settings, metric,
            drop, latency_p50_ms, latency_p99_ms, model_bytes, speedup, size_ratio,
            feasible, why_not). Every key is optional.
        title: the page heading; by default ``"tunelens compression report"``.
        full_page: a whole page (``True``) or one ``<div>`` to insert into a page.

    Returns:
        The HTML text. It loads nothing over the network.

    Raises:
        TypeError: ``doc`` is not a mapping.

    Example:
        >>> render_compress_html({"candidates": []}).startswith("<!DOCTYPE html>")
        True
    """
    doc = _check_doc(doc, "render_compress_html")
    heading = title if title is not None else "tunelens compression report"
    uid = f"tl-{uuid.uuid4().hex[:12]}"
    figures = _Figures(uid)
    body = [_compress_header(doc, heading), _compress_summary(doc), _compress_table(doc)]
    fig = figures.add(_fig_compress(doc), "Metric against latency and size")
    if fig:
        body.append(
            _section(
                "tradeoff",
                "Trade-off",
                fig,
                "The chosen model is the star, the original the square; crosses did not meet "
                "the constraints; the dashed line is the worst metric allowed.",
            )
        )
    body.append(_footer(_text(doc.get("schema")) or "tunelens.compress/1"))
    body.append(figures.scripts())
    return _page("".join(b for b in body if b), heading, uid, len(figures), full_page)


def write_compress_html(
    doc: Mapping[str, Any], path: str | os.PathLike[str], *, title: str | None = None
) -> pathlib.Path:
    """Write `render_compress_html(doc)` to ``path`` atomically.

    Args:
        doc: the ``tunelens.compress/1`` document.
        path: the file to write; its folder is created if missing.
        title: the page heading.

    Returns:
        ``path`` as a `pathlib.Path`.

    Raises:
        TypeError: ``doc`` is not a mapping.
        OSError: the file could not be written (``path`` is then untouched).
    """
    return _write(render_compress_html(doc, title=title), path)
