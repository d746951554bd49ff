"""Models at a node: the registry of its parts of trained models, and online scoring.

When a job ends well, every ``train_lr`` and ``train_sgb`` model output this node received is
registered under ``<job id>.<component id>`` — the same key at every party, each holding
only its own part. Online scoring (``POST /v1/models/{id}/predict`` at the label party): the
label party takes the applicant's features from the request (or finds the ID in its own
dataset), asks every other party of the model over the data plane for its part of that
ID's score — a partial score (vertical LR: σ of their sum is the answer) or the leaves its
splits allow in each tree (SecureBoost: the leaf all parties allow carries the weight).
A party answers such a request only from a pinned peer that is the model's label party,
only while a grant lets that peer use the dataset for ``predict`` with the model's
features, and writes each answer to its ledger (the ID hashed).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from rainbridge.components.train_lr import MODEL_FORMAT
from rainbridge.components.train_sgb import MODEL_FORMAT as SGB_FORMAT
from rainbridge.data import DatasetRef, read_columns, write_json_atomic
from rainbridge.errors import (
    AuthorizationError,
    ConfigError,
    DataError,
    NotFoundError,
    RainbridgeError,
)
from rainbridge.jobs.spec import JobSpec
from rainbridge.node.config import NodeConfig
from rainbridge.node.dataplane import DataPlane
from rainbridge.node.grants import source_dataset, use_grant
from rainbridge.node.paths import check_id, under
from rainbridge.node.router import MessageRouter
from rainbridge.node.storage import ModelRow, Storage
from rainbridge.protocols.fl.trees import (
    TreePart,
    combine_marks,
    leaf_marks,
    link,
    unpack_marks,
)
from rainbridge.protocols.fl.vertical_lr import standardise

MODEL_TYPES = {"train_lr": MODEL_FORMAT, "train_sgb": SGB_FORMAT}

#: rows of a dataset kept in memory per model for online lookups
MAX_ONLINE_ROWS = 5_000_000


class _Index:
    """A model's features of a dataset, by ID, loaded once for online scoring."""

    def __init__(self, ref: DatasetRef, id_column: str, features: list[str]) -> None:
        if ref.num_rows > MAX_ONLINE_ROWS:
            raise ConfigError(f"dataset {ref.name!r} is too large to serve online lookups")
        table = read_columns(ref, [id_column, *features])
        ids = table.column(id_column).cast("string").to_pylist()
        self.rows = {v: i for i, v in enumerate(ids)}
        self.x = np.column_stack(
            [table.column(c).cast("double").to_numpy(zero_copy_only=False) for c in features]
        )


class Models:
    """The model registry and online scoring; owns the parts, trees and feature indexes it
    loads once per model."""

    def __init__(
        self, config: NodeConfig, storage: Storage, dataplane: DataPlane, router: MessageRouter
    ) -> None:
        self.name, self.config, self.storage, self.dataplane = (
            config.name,
            config,
            storage,
            dataplane,
        )
        self._indexes: dict[str, _Index] = {}  # per model, its features by ID
        self._parts: dict[str, dict[str, Any]] = {}  # per model, this node's part
        self._trees: dict[str, list[TreePart]] = {}  # per SecureBoost model, parsed once
        # a name's next version is read then written: two registrations at once (two jobs
        # ending, an import beside a job) took the same number on SQLite and PostgreSQL
        # alike. This process is the only writer of its node's registry, so a lock suffices.
        self._registering = threading.Lock()
        router.add("score", self._on_score, owner="models")

    # -- registry --------------------------------------------------------------------------

    def register_models(
        self, job_id: str, spec: Mapping[str, Any], result: Mapping[str, Any]
    ) -> None:
        job = JobSpec.model_validate(spec)
        comps = {c.id: c for c in job.components}
        for cid, summary in result.get("components", {}).items():
            out = summary.get("outputs", {}).get("model")
            c = comps.get(cid)
            if out is None or c is None or c.type not in MODEL_TYPES:
                continue
            with self.storage.session() as s:
                if s.get(ModelRow, f"{job_id}.{cid}") is not None:
                    continue  # registered already (the end of a job handled twice)
            model = json.loads(Path(out["path"]).read_text())
            feats = c.params.get("features")
            row = ModelRow(
                id=f"{job_id}.{cid}",
                job_id=job_id,
                component=cid,
                type=c.type,
                path=str(out["path"]),
                dataset=source_dataset(job, cid, self.name),
                label_party=str(model["label_party"]),
                parties=sorted(p for p, r in c.inputs.items() if r.role is None),
                features=list(model["features"]),
                features_by_party=_features_by_party(feats),
                metrics=_metrics(summary),
            )
            self._add_model(row, f"{job.name}/{cid}", job_id)

    def _add_model(
        self, row: ModelRow, name: str, job_id: str | None, version: int | None = None
    ) -> None:
        """Register ``row`` as the next version of ``name`` (as ``version``, if given and
        free: an imported part keeps the number the other parties know it by)."""
        with self._registering, self.storage.session() as s:
            if s.get(ModelRow, row.id) is not None:
                raise ConfigError(f"model {row.id!r} is already registered here")
            versions = s.scalars(select(ModelRow.version).where(ModelRow.name == name)).all()
            row.name = name
            row.version = max(versions, default=0) + 1
            if version is not None and version > 0:
                if version in versions:
                    raise ConfigError(
                        f"{name}@{version} is another model at this node: the part cannot "
                        "keep the version the other parties know it by"
                    )
                row.version = version
            s.add(row)
            s.flush()
            info = row.to_dict()
        self.storage.log("model_registered", info, job_id)

    def export_model(self, model_id: str) -> dict[str, Any]:
        """This node's part of a model with its registration, to move it to another node."""
        row = self.resolve(model_id)
        return {"party": self.name, "registration": row.to_dict(), "part": self._part(row)}

    def import_model(
        self, exported: Mapping[str, Any], dataset: str | None, actor: str
    ) -> dict[str, Any]:
        """Register an exported part here (a node rebuilt or moved); ``dataset`` is this
        node's dataset to look IDs up in for online scoring."""
        reg, part = exported.get("registration"), exported.get("part")
        if not isinstance(reg, dict) or not isinstance(part, dict):
            raise ConfigError("an exported model has 'registration' and 'part'")
        fmt = part.get("format")
        if fmt not in MODEL_TYPES.values():
            raise ConfigError("not a vertical LR or SecureBoost model part")
        try:
            model_id = check_id(reg["id"], "model ID")
            feats = [str(f) for f in part["features"]]
            # what scoring reads (online and in a job): refused now, not as a KeyError then
            needs: tuple[str, ...] = ("weights", "mean", "scale", "intercept", "label_party")
            if fmt == SGB_FORMAT:
                needs = ("trees", "base", "objective", "label_party")
            absent = [k for k in needs if k not in part]
            if absent:
                raise ConfigError(f"the model part has no {absent[0]!r}")
            if fmt == MODEL_FORMAT and any(
                len(part[k]) != len(feats) for k in ("weights", "mean", "scale")
            ):
                raise ConfigError("the part's features, weights and standardisation differ")
            if fmt == SGB_FORMAT:
                trees = [TreePart.from_json(t) for t in part["trees"]]
                if any(f >= len(feats) for t in trees for f, _ in t.splits.values()):
                    raise ConfigError("a split names a feature the part does not have")
            row = ModelRow(
                id=model_id,
                job_id=check_id(reg["job_id"], "job ID"),
                component=check_id(reg["component"], "component ID"),
                type="train_sgb" if fmt == SGB_FORMAT else "train_lr",
                path="",
                dataset=dataset,
                label_party=str(part["label_party"]),
                parties=[str(p) for p in _party_list(reg["parties"])],
                features=feats,
                features_by_party=_features_by_party(reg.get("features_by_party")),
                metrics=_metrics({"result": reg.get("metrics")}),
            )
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"a malformed exported model: {exc}") from None
        if exported.get("party") != self.name or self.name not in row.parties:
            raise ConfigError(
                f"this is {exported.get('party')!r}'s part of the model, not this node's"
            )
        if dataset is not None and dataset not in self.storage.dataset_refs():
            raise NotFoundError(f"no dataset {dataset!r} at this node")
        name = str(reg.get("name") or model_id)
        if "@" in name:  # resolve() would read it as name@version: no job could name it
            raise ConfigError(f"model name {name[:80]!r}: a name has no '@'")
        with self.storage.session() as s:
            if s.get(ModelRow, model_id) is not None:  # before its part's file is written
                raise ConfigError(f"model {model_id!r} is already registered here")
        target = under(self.config.path / "models", f"{model_id}.json")
        write_json_atomic(part, target)
        row.path = str(target)
        version = reg.get("version")
        try:
            self._add_model(
                row,
                name,
                None,
                version if isinstance(version, int) and not isinstance(version, bool) else None,
            )
        except BaseException:
            target.unlink(missing_ok=True)  # nothing registered, nothing left
            raise
        self.storage.log("model_imported", {"model": model_id}, actor=actor)
        return self.model_row(model_id).to_dict()

    def models(self, name: str | None = None, *, retired: bool = True) -> list[dict[str, Any]]:
        """This node's model parts, oldest first: every version of ``name`` only, if given;
        without the retired ones, if ``retired`` is false."""
        q = select(ModelRow).order_by(ModelRow.created_at, ModelRow.version)
        if name is not None:
            q = q.where(ModelRow.name == name)
        if not retired:
            q = q.where(ModelRow.retired_at.is_(None))
        with self.storage.session() as s:
            return [m.to_dict() for m in s.scalars(q)]

    def resolve(self, ref: str) -> ModelRow:
        """The model part ``ref`` names here: its ID (``<job id>.<component>``),
        ``name@version``, or ``name`` (the latest version not retired).

        Raises
        ------
        NotFoundError
            No such model, version or name here.
        """
        ref = str(ref).strip()
        if not ref or len(ref) > 260:
            raise NotFoundError("a model is named by its ID, name@version or name")
        with self.storage.session() as s:
            row = s.get(ModelRow, ref) if "@" not in ref else None
            if row is None:
                name, at, version = ref.rpartition("@") if "@" in ref else (ref, "", "")
                q = select(ModelRow).where(ModelRow.name == name)
                if at and version != "latest":
                    # digits only: int() also reads "1_0", "+1", " 1" and other scripts'
                    # digits, and a number too large for the database's integer
                    if not re.fullmatch(r"[0-9]{1,9}", version):
                        raise NotFoundError(f"{ref!r}: a version is a number (name@3) or 'latest'")
                    q = q.where(ModelRow.version == int(version))
                    row = s.scalars(q).first()
                else:
                    q = q.where(ModelRow.retired_at.is_(None))
                    row = s.scalars(q.order_by(ModelRow.version.desc())).first()
            if row is None:
                raise NotFoundError(f"no model {ref!r} at this node (see `rainbridge model list`)")
            s.expunge(row)
            return row

    def retire(self, ref: str, actor: str) -> dict[str, Any]:
        """Retire a model version here: no job and no online request scores with it again
        (the other parties keep their parts; a job naming it is refused here)."""
        row = self.resolve(ref)
        with self.storage.session() as s:
            stored = s.get(ModelRow, row.id)
            assert stored is not None
            if stored.retired_at is not None:
                raise ConfigError(f"model {row.name} v{row.version} is retired already")
            stored.retired_at = dt.datetime.now(dt.UTC)
            stored.retired_by = actor[:200]
            s.flush()
            info = stored.to_dict()
        self._parts.pop(row.id, None)
        self._indexes.pop(row.id, None)
        self.storage.log(
            "model_retired",
            {"model": row.id, "name": row.name, "version": row.version},
            actor=actor,
        )
        return info

    def resolve_job(self, job: JobSpec) -> dict[str, dict[str, Any]]:
        """The registered models ``job``'s ``predict`` components name at this node, by the
        name the job uses: this node's part (``path``) and its registration. A model that
        is not here, is retired, or belongs to other parties than the component's is
        refused before any message.

        Raises
        ------
        NotFoundError, AuthorizationError, DataError
            Saying which component and which model.
        """
        out: dict[str, dict[str, Any]] = {}
        earlier: set[str] = set()
        for c in job.components:
            ref = c.inputs.get(self.name)
            name = str(c.params.get("model", "")) if c.type == "predict" else ""
            if c.type == "predict" and ref is not None and name not in earlier and name:
                row = self.resolve(name)
                if row.retired_at is not None:
                    raise ModelRetiredError(
                        f"model {row.name} v{row.version} ({row.id}) is retired at "
                        f"{self.name!r} (component {c.id!r})"
                    )
                data = sorted(p for p, r in c.inputs.items() if r.role is None)
                if data != sorted(row.parties):
                    raise DataError(
                        f"model {name!r} was trained by {', '.join(row.parties)}; component "
                        f"{c.id!r} names {', '.join(data)}"
                    )
                if not Path(row.path).is_file():  # else the PSI runs, then the predict fails
                    raise DataError(
                        f"model {row.name} v{row.version} ({row.id}): this node's part is "
                        f"missing at {self.name!r} (component {c.id!r})"
                    )
                out_spec = c.outputs.get("predictions")
                if out_spec is not None and list(out_spec.receivers) != [row.label_party]:
                    raise DataError(  # only the label party can add the partial scores up
                        f"component {c.id!r}: the predictions go to the label party of model "
                        f"{name!r}, {row.label_party!r}"
                    )
                out[name] = {**row.to_dict(), "path": row.path}
            earlier.add(c.id)
        return out

    def model(self, model_id: str) -> dict[str, Any]:
        row = self.resolve(model_id)
        return {**row.to_dict(), "part": self._part(row)}

    def model_row(self, model_id: str) -> ModelRow:
        check_id(model_id, "model ID")
        with self.storage.session() as s:
            row = s.get(ModelRow, model_id)
            if row is None:
                raise NotFoundError(f"no model {model_id!r} at this node")
            s.expunge(row)
            return row

    def _part(self, row: ModelRow) -> dict[str, Any]:
        """The part's JSON, read once per model (parts never change once registered)."""
        part = self._parts.get(row.id)
        if part is None:
            part = dict(json.loads(Path(row.path).read_text()))
            if part.get("format") not in MODEL_TYPES.values():
                raise DataError(f"model {row.id!r}: unknown format")
            if part["format"] == SGB_FORMAT:
                self._trees[row.id] = [TreePart.from_json(t) for t in part["trees"]]
            self._parts[row.id] = part
        return part

    def _partial(self, row: ModelRow, key: str | None, given: Mapping[str, Any] | None) -> Any:
        """This node's part of a score: its standardised features times its weights (LR),
        or the hex of its leaf marks (SecureBoost)."""
        part = self._part(row)
        feats = list(part["features"])
        if given is not None:
            missing = [f for f in feats if f not in given]
            if missing:
                raise DataError(
                    f"the request lacks feature {missing[0]!r}; model {row.name} "
                    f"v{row.version} needs at {self.name!r}: {', '.join(feats)}"
                )
            try:
                x = np.array([float(given[f]) for f in feats])
            except (TypeError, ValueError):
                raise DataError("features must be numbers") from None
        else:
            if row.dataset is None or key is None:
                raise DataError(f"model {row.id!r} has no dataset to look the ID up in")
            x = self._lookup(row, key)
        if part["format"] == SGB_FORMAT:
            trees = self._trees[row.id]
            return leaf_marks(trees, np.asarray(x, dtype=float).reshape(1, -1)).hex()
        bad = [
            f for f, v in zip(feats, np.asarray(x, dtype=float), strict=True) if not np.isfinite(v)
        ]
        if bad:  # SecureBoost has a branch for a missing value; a weight times NaN is NaN
            raise DataError(f"feature {bad[0]!r} is not a finite number at {self.name!r}")
        z = float(standardise(x, part["mean"], part["scale"]) @ np.array(part["weights"]))
        return z + float(part["intercept"] or 0.0)

    def _lookup(self, row: ModelRow, key: str) -> Any:
        index = self._indexes.get(row.id)
        if index is None:
            refs = self.storage.dataset_refs()
            ref = refs.get(row.dataset or "")
            if ref is None or not ref.id_column:
                raise DataError(f"dataset {row.dataset!r} of model {row.id!r} is gone")
            index = _Index(ref, ref.id_column, list(row.features))
            self._indexes[row.id] = index
        at = index.rows.get(key)
        if at is None:
            raise UnknownKeyError(key)
        return index.x[at]

    # -- online scoring --------------------------------------------------------------------

    async def predict_online(
        self, model_id: str, key: str, features: Mapping[str, Any] | None, actor: str
    ) -> dict[str, Any]:
        """σ(z) for one ID at the label party, gathering the other parties' partial scores."""
        t0 = time.perf_counter()
        row = self.model_row(model_id)  # by its ID (the CLI resolves a name@version first)
        _in_use(row)
        if row.label_party != self.name:
            raise AuthorizationError(
                f"model {model_id!r} is scored at its label party {row.label_party!r}"
            )
        mine = self._partial(row, key, features)
        others = [p for p in row.parties if p != self.name]
        msg = {"type": "score", "model": model_id, "key": key}
        replies = await asyncio.gather(*(self.dataplane.request(p, msg) for p in others))
        for peer, reply in zip(others, replies, strict=True):
            if reply.get("ok") is not True:
                raise DataError(f"{peer!r} did not score: {str(reply.get('reason'))[:200]}")
        score: Any
        part = self._part(row)
        if part["format"] == SGB_FORMAT:
            score = self._combine_sgb(part, self._trees[row.id], mine, others, replies)
        else:
            total = mine
            for peer, reply in zip(others, replies, strict=True):
                z = reply.get("z")
                # a bool is an int to Python; NaN or infinity would make the score NaN, 0 or 1
                if isinstance(z, bool) or not isinstance(z, int | float) or not np.isfinite(z):
                    raise DataError(f"{peer!r} answered without a partial score")
                total += float(z)
            score = float(1.0 / (1.0 + np.exp(-np.clip(total, -30, 30))))
        self.storage.log(
            "model_scored", {"model": model_id, "key_sha256": _h(key), "parties": others},
            actor=actor,
        )  # fmt: skip
        return {
            "model": model_id,
            "key": key,
            "score": score,
            "milliseconds": round((time.perf_counter() - t0) * 1000, 2),
        }

    def _on_score(self, peer: str, msg: Mapping[str, Any]) -> dict[str, Any]:
        """A label party asks for this node's partial score of one ID."""
        model_id, key = str(msg.get("model", ""))[:128], str(msg.get("key", ""))[:256]
        try:
            row = self.model_row(model_id)
            _in_use(row)
            if peer != row.label_party or peer not in row.parties:
                raise AuthorizationError(f"{peer!r} is not the label party of {model_id!r}")
            self._check_predict_grant(row, peer)
            z = self._partial(row, key, None)
        except RainbridgeError as exc:
            why = loggable(exc)
            self.storage.log(
                "score_refused", {"model": model_id, "reason": why[:200]}, actor=f"peer:{peer}"
            )
            return {"ok": False, "reason": why[:300]}
        self.storage.log(
            "model_scored", {"model": model_id, "key_sha256": _h(key)}, actor=f"peer:{peer}"
        )
        if isinstance(z, str):
            return {"ok": True, "marks": z}
        return {"ok": True, "z": z}

    @staticmethod
    def _combine_sgb(
        part: Mapping[str, Any],
        trees: list[TreePart],
        mine: str,
        others: list[str],
        replies: Sequence[Any],
    ) -> Any:
        """The label party's score from its own and the other parties' leaf marks."""
        marks = [unpack_marks(bytes.fromhex(mine), 1, trees)]
        for peer, reply in zip(others, replies, strict=True):
            try:
                marks.append(unpack_marks(bytes.fromhex(str(reply.get("marks"))), 1, trees))
            except (ValueError, RainbridgeError):
                raise DataError(f"{peer!r} answered with malformed leaf marks") from None
        base = np.asarray(part["base"], dtype=np.float64)
        try:
            out = link(combine_marks(trees, base, marks, 1), str(part["objective"]))
        except RainbridgeError as exc:
            raise DataError(f"the parties' parts do not agree: {exc}") from None
        return out[0].tolist() if out.ndim == 2 else float(out[0])

    def _check_predict_grant(self, row: ModelRow, peer: str) -> None:
        if row.dataset is None:
            raise DataError(f"model {row.id!r} has no dataset here")
        use_grant(
            self.storage,
            dataset=row.dataset,
            peer=peer,
            component_type="predict",
            columns=list(row.features),
            receivers=[peer],
            rows=1,
            what=f"score dataset {row.dataset!r} online",
            count=False,
        )


class ModelRetiredError(AuthorizationError):
    """A retired model named by a job or an online request."""


def _in_use(row: ModelRow) -> None:
    if row.retired_at is not None:
        raise ModelRetiredError(f"model {row.name} v{row.version} ({row.id}) is retired")


#: the figures of a training's summary kept with its model (model cards in the registry)
_CARD = ("auc", "ks", "rows", "positives", "epochs_run", "accuracy", "rmse", "trees", "rounds")


def _metrics(summary: Mapping[str, Any]) -> dict[str, float] | None:
    """A training component's headline figures at this party, finite numbers only."""
    given = summary.get("result")
    out: dict[str, float] = {}
    for source in (given if isinstance(given, Mapping) else {}, summary):
        for k in (*_CARD, "seconds"):
            v = source.get(k)
            if isinstance(v, bool) or not isinstance(v, int | float) or k in out:
                continue
            if math.isfinite(v):
                out[k] = float(v)
    return out or None


def _party_list(raw: Any) -> list[str]:
    """An exported registration's parties: a list of names (a string is refused, not read
    as its letters)."""
    if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
        raise ConfigError("a malformed exported model: its parties are a list of names")
    return list(raw)


def _features_by_party(raw: Any) -> dict[str, list[str]] | None:
    """Every party's features as a training component named them (None: not known)."""
    if not isinstance(raw, Mapping):
        return None
    return {str(p): [str(f) for f in cols] for p, cols in raw.items() if isinstance(cols, list)}


class UnknownKeyError(NotFoundError):
    """An ID not in the model's dataset. The ID is personal data (a national ID number, a
    phone number): the message, which answers the caller, names it; ``log_text``, which is
    all that may reach a log, a ledger entry or another party, does not."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no row with ID {key!r} here")
        self.log_text = "no row with the ID given here"


def loggable(exc: BaseException) -> str:
    """What of ``exc`` may be written to a log or told to a peer."""
    return str(getattr(exc, "log_text", None) or exc)


def _h(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
