"""Model versions with their lineage, the champion, promotions and rollbacks, in the store.

The closed loop (issue 7) records every model it trains or compresses as a version of the
monitored model, with the version it came from, the run that produced it, its measured
metrics and the decision taken on it. :class:`VersionRegistry` keeps that record as one
JSON document per model (``Store.put_blob(model, "versions", ...)``, schema
``tunelens.versions/1``), so it works on every store backend, survives restarts and is
read back whole. Each change rewrites the document in one store write: a crash leaves
either the old or the new record, never half of one. One process should write a model's
registry at a time (the loop); readers may be many.

Example:
    >>> import os, tempfile
    >>> from tunelens.store import open_store
    >>> store = open_store(os.path.join(tempfile.mkdtemp(), "v.duckdb"))
    >>> reg = VersionRegistry(store, "churn")
    >>> _ = reg.register("1", source="train", metrics={"accuracy": 0.91})
    >>> _ = reg.promote("1", reason="first model")
    >>> _ = reg.register("2", parent="1", source="tune", run="loop-1")
    >>> _ = reg.promote("2", reason="significantly better")
    >>> [v.version for v in reg.lineage("2")], reg.champion().version
    (['2', '1'], '2')
    >>> reg.rollback(reason="latency regression").version
    '1'
    >>> reg.save_model("1", {"weights": [1, 2]})
    'blob:model@1'
    >>> reg.load_model()
    {'weights': [1, 2]}
    >>> store.close()
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from tunelens.errors import InputError
from tunelens.store._base import Store

__all__ = ["SCHEMA", "SOURCES", "VersionEvent", "VersionInfo", "VersionRegistry"]

SCHEMA = "tunelens.versions/1"
#: how a version came to be
SOURCES: tuple[str, ...] = ("train", "tune", "compress", "import")
_KIND = "versions"
#: blob kind prefix of a version's pickled model
_ARTIFACT = "model@"


@dataclass(frozen=True)
class VersionInfo:
    """One version of a model: where it came from and what was measured on it."""

    version: str
    created: str
    source: str
    parent: str | None = None
    run: str | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    artifact: str | None = None
    note: str = ""


@dataclass(frozen=True)
class VersionEvent:
    """A promotion or a rollback: which version became the champion, from which, why."""

    at: str
    action: str  # "promote" | "rollback"
    version: str
    previous: str | None
    reason: str
    decision: dict[str, Any] | None = None


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _clean_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for k, v in (metrics or {}).items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise InputError(f"metrics[{k!r}]", f"is {v!r}", "give numbers")
        out[str(k)] = float(v) if math.isfinite(v) else None
    return out


class VersionRegistry:
    """The versions of ``model`` in ``store``: register, promote, roll back, read lineage.

    Args:
        store: any `Store` (DuckDB, PostgreSQL).
        model: the monitored model's name.
        clock: the time of records and events (a UTC datetime; default now): a
            simulation or a replay passes its own.
    """

    def __init__(
        self, store: Store, model: str, *, clock: Callable[[], datetime] | None = None
    ) -> None:
        if not isinstance(model, str) or not model:
            raise InputError("model", f"is {model!r}", "give the model's name")
        self.store, self.model = store, model
        self._clock = clock
        self._lock = threading.Lock()

    def _now(self) -> str:
        return _now() if self._clock is None else self._clock().astimezone(UTC).isoformat()

    # ---- the document -------------------------------------------------------------------

    def _read(self) -> dict[str, Any]:
        found = self.store.get_blob(self.model, _KIND)
        if found is None:
            return {"schema": SCHEMA, "model": self.model, "versions": [], "events": []}
        doc = json.loads(found[0])
        if doc.get("schema") != SCHEMA:
            raise InputError(
                f"store[{self.model!r}].versions",
                f"has schema {doc.get('schema')!r}",
                f"expected {SCHEMA}",
            )
        return dict(doc)

    def _write(self, doc: dict[str, Any]) -> None:
        self.store.put_blob(self.model, _KIND, json.dumps(doc, allow_nan=False).encode())

    def to_dict(self) -> dict[str, Any]:
        """The whole record (``tunelens.versions/1``): versions, events, champion."""
        doc = self._read()
        doc["champion"] = self._champion_of(doc)
        return doc

    # ---- reading --------------------------------------------------------------------------

    @staticmethod
    def _champion_of(doc: Mapping[str, Any]) -> str | None:
        events = doc.get("events") or []
        return str(events[-1]["version"]) if events else None

    def versions(self) -> list[VersionInfo]:
        """Every registered version, oldest first."""
        return [VersionInfo(**v) for v in self._read()["versions"]]

    def history(self) -> list[VersionEvent]:
        """Promotions and rollbacks, oldest first."""
        return [VersionEvent(**e) for e in self._read()["events"]]

    def get(self, version: str) -> VersionInfo:
        """One version.

        Raises:
            InputError: no such version (the message lists the known ones).
        """
        known = self.versions()
        for v in known:
            if v.version == version:
                return v
        raise InputError(
            "version", f"{version!r} is not registered", f"use one of {[v.version for v in known]}"
        )

    def champion(self) -> VersionInfo | None:
        """The version now serving (the latest promotion or rollback), or None."""
        current = self._champion_of(self._read())
        return None if current is None else self.get(current)

    def lineage(self, version: str) -> list[VersionInfo]:
        """``version`` and its ancestors, newest first (parent links)."""
        by_name = {v.version: v for v in self.versions()}
        if version not in by_name:
            self.get(version)  # raises, naming the known versions
        chain: list[VersionInfo] = []
        seen: set[str] = set()
        current: str | None = version
        while current is not None and current in by_name and current not in seen:
            seen.add(current)
            chain.append(by_name[current])
            current = by_name[current].parent
        return chain

    # ---- writing --------------------------------------------------------------------------

    def register(
        self,
        version: str,
        *,
        source: str = "train",
        parent: str | None = None,
        run: str | None = None,
        metrics: Mapping[str, Any] | None = None,
        artifact: str | None = None,
        note: str = "",
    ) -> VersionInfo:
        """Record a new version (not yet serving).

        Raises:
            InputError: an empty or already registered version, an unknown ``source``
                (accepted: train, tune, compress, import) or ``parent``, non-numeric
                metrics.
        """
        if not isinstance(version, str) or not version:
            raise InputError("version", f"is {version!r}", "give a non-empty string")
        if source not in SOURCES:
            raise InputError("source", f"is {source!r}", f"use one of {list(SOURCES)}")
        info = VersionInfo(
            version=version,
            created=self._now(),
            source=source,
            parent=parent,
            run=run,
            metrics=_clean_metrics(metrics),
            artifact=artifact,
            note=str(note),
        )
        with self._lock:
            doc = self._read()
            names = [v["version"] for v in doc["versions"]]
            if version in names:
                raise InputError("version", f"{version!r} is already registered", "use a new name")
            if parent is not None and parent not in names:
                raise InputError("parent", f"{parent!r} is not registered", f"use one of {names}")
            doc["versions"].append(asdict(info))
            self._write(doc)
        return info

    def promote(
        self, version: str, *, reason: str, decision: Mapping[str, Any] | None = None
    ) -> VersionInfo:
        """Make ``version`` the champion, saying why (and the decision behind it).

        Raises:
            InputError: unknown version, or it is already the champion.
        """
        with self._lock:
            doc = self._read()
            names = [v["version"] for v in doc["versions"]]
            if version not in names:
                raise InputError("version", f"{version!r} is not registered", f"use one of {names}")
            previous = self._champion_of(doc)
            if previous == version:
                raise InputError("version", f"{version!r} is already the champion", "")
            event = VersionEvent(
                self._now(), "promote", version, previous, str(reason), dict(decision or {}) or None
            )
            doc["events"].append(asdict(event))
            self._write(doc)
        return self.get(version)

    def rollback(self, *, reason: str) -> VersionInfo:
        """Make the champion before the current one serve again.

        Raises:
            InputError: there is no earlier champion to return to.
        """
        with self._lock:
            doc = self._read()
            current = self._champion_of(doc)
            earlier = [e["version"] for e in doc["events"] if e["version"] != current]
            if current is None or not earlier:
                raise InputError(
                    "rollback", "there is no earlier champion", "promote a version first"
                )
            target = str(earlier[-1])
            event = VersionEvent(self._now(), "rollback", target, current, str(reason))
            doc["events"].append(asdict(event))
            self._write(doc)
        return self.get(target)

    # ---- model artifacts ------------------------------------------------------------------

    def save_model(self, version: str, model: Any) -> str:
        """Keep the fitted ``model`` of a registered ``version`` in the store (pickled).

        The artifact lives beside the record (``put_blob(model_name, "model@<version>")``)
        so that a rollback, the CLI and a restarted loop can load the model that served.
        Loading unpickles: open only stores you trust, as with any pickled model.

        Returns:
            The artifact's reference, ``"blob:model@<version>"``, also written into the
            version's record.

        Raises:
            InputError: unknown version, or a model that cannot be pickled.
        """
        import pickle

        try:
            data = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise InputError(
                "model",
                f"cannot be pickled ({type(exc).__name__}: {exc})",
                "pass a picklable model",
            ) from None
        ref = f"blob:{_ARTIFACT}{version}"
        with self._lock:
            doc = self._read()
            entry = next((v for v in doc["versions"] if v["version"] == version), None)
            if entry is None:
                names = [v["version"] for v in doc["versions"]]
                raise InputError("version", f"{version!r} is not registered", f"use one of {names}")
            self.store.put_blob(self.model, _ARTIFACT + version, data)
            entry["artifact"] = ref
            self._write(doc)
        return ref

    def load_model(self, version: str | None = None) -> Any:
        """The model saved for ``version`` (default: the champion).

        Raises:
            InputError: no champion, an unknown version, or no artifact saved for it.
        """
        import pickle

        if version is None:
            current = self.champion()
            if current is None:
                raise InputError("version", "no champion is recorded", "promote a version first")
            version = current.version
        info = self.get(version)
        found = self.store.get_blob(self.model, _ARTIFACT + version)
        if found is None:
            raise InputError(
                "version",
                f"{version!r} has no saved model (artifact {info.artifact!r})",
                "save it with VersionRegistry.save_model",
            )
        return pickle.loads(found[0])
