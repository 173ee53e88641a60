"""The controller's model registry (issue 19, docs/MODELS.md): users' model files, content-addressed.

A model's identity is the sha256 of its file. The registry (table ``models`` in the results
store, migration 5) names each digest ``name@version`` with its format, input signature, classes,
dataset, size and who added it; the file itself is copied into the artifact directory as
``sha256/<digest>`` (written to a temporary name, then renamed: a crash leaves no half file).
Jobs name a model by ``name@version``, ``name`` (its latest version) or ``sha256:<digest>``
(:meth:`ModelRegistry.resolve`); :mod:`edgebench.controller.artifact_delivery` turns the entry
into the job's :class:`~edgebench.schemas.artifact.ModelArtifactRef`.
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import socket
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa

from edgebench.common.files import sha256_file
from edgebench.controller.errors import ControllerError, ControllerUsageError
from edgebench.controller.model_files import ModelFacts, inspect
from edgebench.runner.catalogue import DATASETS
from edgebench.schemas.base import IDENTIFIER_PATTERN

if TYPE_CHECKING:
    from edgebench.controller.store import ResultStore


models = sa.Table(
    "models", sa.MetaData(),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("version", sa.String(64), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False, index=True),
    sa.Column("format", sa.String(16), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("input_name", sa.String(200), nullable=False),
    sa.Column("input_shape", sa.String(200), nullable=False),  # "28,28,1": per sample
    sa.Column("input_dtype", sa.String(16), nullable=False),
    sa.Column("layout", sa.String(8), nullable=False),
    sa.Column("classes", sa.Integer, nullable=False),
    sa.Column("dataset", sa.String(32)),  # a catalogue dataset of that shape, or NULL: synthetic input
    sa.Column("detail", sa.String(200)),
    sa.Column("added_by", sa.String(200)),
    sa.Column("added_at", sa.DateTime(timezone=True)),
)


def v5_models(conn: sa.Connection) -> None:
    """The model registry (issue 19)."""
    models.create(conn, checkfirst=True)


class UnknownModel(ControllerUsageError):
    pass


@dataclass(frozen=True)
class ModelEntry:
    name: str
    version: str
    digest: str
    format: str
    size_bytes: int
    input_name: str
    input_shape: tuple[int, ...]
    input_dtype: str
    layout: str
    classes: int
    dataset: str | None
    detail: str
    added_by: str
    added_at: datetime | None

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "digest": self.digest, "format": self.format,
                "size_bytes": self.size_bytes, "input": f"{self.input_name} {'x'.join(map(str, self.input_shape))} "
                f"{self.input_dtype} {self.layout}", "classes": self.classes, "dataset": self.dataset or "synthetic",
                "detail": self.detail, "added_by": self.added_by,
                "added_at": self.added_at.isoformat() if self.added_at else None}


def default_artifact_dir() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("edgebench")) / "artifacts"


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(p) for p in re.split(r"[x,\s]+", text.strip()) if p)
    except ValueError:
        raise ControllerUsageError(f"--input-shape {text!r}: give the per-sample shape, e.g. 28,28,1") from None
    if not dims or len(dims) > 8 or any(d < 1 or d > 1 << 20 for d in dims):
        raise ControllerUsageError(f"--input-shape {text!r}: 1 to 8 dimensions, each 1 to 1048576")
    return dims


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"[:200]


def _layout(shape: tuple[int, ...], fmt: str) -> str:
    if len(shape) != 3:
        return "flat" if len(shape) == 1 else "NHWC"
    if fmt == "onnx" and shape[0] in (1, 3) and shape[-1] not in (1, 3):
        return "NCHW"  # torch exports are channels first
    return "NHWC"


class ModelRegistry:
    def __init__(self, store: ResultStore, artifact_dir: Path | None = None):
        self.store = store
        self.dir = artifact_dir or default_artifact_dir()

    def path_of(self, digest: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ControllerUsageError(f"not a sha256 digest: {digest!r}")
        return self.dir / "sha256" / digest

    def add(self, file: Path, name: str, version: str | None = None, input_shape: tuple[int, ...] | None = None,
            classes: int | None = None, dataset: str | None = None, layout: str | None = None) -> ModelEntry:
        for label, value in (("--name", name), ("--version", version)):
            if value is not None and not re.fullmatch(IDENTIFIER_PATTERN, value):
                raise ControllerUsageError(f"{label} {value!r}: letters, digits, _ . - (at most 64)")
        if not file.is_file():
            raise ControllerUsageError(f"{file}: no such file")
        facts: ModelFacts = inspect(file)
        shape = input_shape or facts.input_shape
        if shape is None:
            raise ControllerUsageError(f"{file.name}: the file does not state its input shape; give --input-shape")
        if facts.input_shape is not None and input_shape is not None and input_shape != facts.input_shape:
            raise ControllerUsageError(f"--input-shape {input_shape} differs from the file's {facts.input_shape}")
        n_classes = classes or facts.classes
        if n_classes is None:
            raise ControllerUsageError(f"{file.name}: the file does not state its classes; give --classes")
        if dataset is not None:
            if dataset not in DATASETS:
                raise ControllerUsageError(f"--dataset {dataset!r}: known: {', '.join(DATASETS)}")
            ds_shape = tuple(cast("tuple[int, ...]", DATASETS[dataset]["shape"]))  # plain data (runner/catalogue.py)
            if sorted(ds_shape) != sorted(shape) or DATASETS[dataset]["classes"] != n_classes:
                raise ControllerUsageError(f"--dataset {dataset}: its samples are {ds_shape} with "
                                           f"{DATASETS[dataset]['classes']} classes; the model takes {shape} "
                                           f"with {n_classes}")
        digest = sha256_file(file)
        self._keep(file, digest)
        with self.store.engine.begin() as conn:
            same = conn.execute(sa.select(models.c.version).where(
                models.c.name == name, models.c.digest == digest)).first()
            if version is None and same is not None:
                return self.resolve(f"{name}@{same[0]}")  # the same file again: nothing new to register
            if version is None:
                taken = [r[0] for r in conn.execute(sa.select(models.c.version).where(models.c.name == name))]
                numbers = [int(v) for v in taken if v.isdigit()]
                version = str(max(numbers, default=0) + 1)
            existing = conn.execute(sa.select(models.c.digest).where(
                models.c.name == name, models.c.version == version)).first()
            if existing is not None:
                if existing[0] == digest:
                    return self.resolve(f"{name}@{version}")
                raise ControllerUsageError(f"{name}@{version} is already a different file ({existing[0][:16]}); "
                                           "give another --version")
            conn.execute(models.insert().values(
                name=name, version=version, digest=digest, format=facts.format, size_bytes=file.stat().st_size,
                input_name=facts.input_name, input_shape=",".join(map(str, shape)), input_dtype=facts.dtype,
                layout=layout or _layout(shape, facts.format), classes=n_classes, dataset=dataset,
                detail=facts.detail, added_by=_who(), added_at=datetime.now(timezone.utc)))
        return self.resolve(f"{name}@{version}")

    def _keep(self, file: Path, digest: str) -> None:
        final = self.path_of(digest)
        if final.exists() and sha256_file(final) == digest:
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".incoming-", dir=final.parent)
        os.close(fd)
        try:
            shutil.copyfile(file, tmp)
            if sha256_file(Path(tmp)) != digest:
                raise ControllerError(f"{file}: changed while it was copied")
            os.chmod(tmp, 0o644)
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def entries(self) -> list[ModelEntry]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(models).order_by(models.c.name, models.c.added_at)).mappings().all()
        return [_entry(r) for r in rows]

    def resolve(self, ref: str) -> ModelEntry:
        """``name@version``, ``name`` (its latest version) or ``sha256:<digest>`` (or the bare digest)."""
        query = sa.select(models)
        digest = ref.removeprefix("sha256:")
        if re.fullmatch(r"[0-9a-f]{64}", digest):
            query = query.where(models.c.digest == digest)
        elif "@" in ref:
            name, version = ref.split("@", 1)
            query = query.where(models.c.name == name, models.c.version == version)
        else:
            query = query.where(models.c.name == ref)
        with self.store.engine.connect() as conn:
            rows = conn.execute(query.order_by(models.c.added_at.desc())).mappings().all()
        if not rows:
            raise UnknownModel(f"no registered model {ref!r} (`controller models list` shows them)")
        return _entry(rows[0])

    def remove(self, ref: str) -> ModelEntry:
        """Drop one name@version (or every name of a digest); the file goes when no entry names it."""
        entry = self.resolve(ref)
        with self.store.engine.begin() as conn:
            if ref.removeprefix("sha256:") == entry.digest:
                conn.execute(models.delete().where(models.c.digest == entry.digest))
            else:
                conn.execute(models.delete().where(models.c.name == entry.name, models.c.version == entry.version))
            left = conn.execute(sa.select(sa.func.count()).select_from(models)
                                .where(models.c.digest == entry.digest)).scalar()
        if not left:
            self.path_of(entry.digest).unlink(missing_ok=True)
        return entry


def _entry(row: Any) -> ModelEntry:
    added = row["added_at"]
    if added is not None and added.tzinfo is None:
        added = added.replace(tzinfo=timezone.utc)  # SQLite returns naive datetimes
    return ModelEntry(
        name=row["name"], version=row["version"], digest=row["digest"], format=row["format"],
        size_bytes=int(row["size_bytes"]), input_name=row["input_name"],
        input_shape=tuple(int(d) for d in row["input_shape"].split(",")), input_dtype=row["input_dtype"],
        layout=row["layout"], classes=int(row["classes"]), dataset=row["dataset"], detail=row["detail"] or "",
        added_by=row["added_by"] or "", added_at=added)
