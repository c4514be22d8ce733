"""Node-local staged copies of a model's weights: where they live, what a complete one holds,
and how one node brings its copy to complete.

A staged copy is a directory `<staging root>/<source slug>` holding the source's files and a
`STAGED.json` marker, written last, that records the manifest the files were verified against
(path, size, and the hash the source publishes). The marker exists only after every file was
verified, so "marker present and every file at its recorded size" means a complete copy; the
engine and preflight check exactly that (cheap), `stage` checks hashes (expensive, once).

The staging root is a property of the node (its fast local disk): `weights.staging_dir` when the
config names one, else the node's `$GIANTSERVE_STAGING_DIR`, else `<giantserve cache>/staged`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from cluster.local_model import cache_root

MARKER = "STAGED.json"
STAGING_DIR_ENV = "GIANTSERVE_STAGING_DIR"
# Usable bytes of the staging disk, for tests and for operators who share the disk with
# something else: without it, the filesystem's free space.
CAPACITY_ENV = "GIANTSERVE_STAGING_CAPACITY_BYTES"
# Space kept free beyond the weights: logs, compile caches and the marker must still fit.
HEADROOM_BYTES = 1 << 30
_HASH_CHUNK = 8 << 20


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileEntry(Frozen):
    path: str = Field(description="relative to the copy's directory, '/'-separated")
    size: int = Field(ge=0)
    sha256: str | None = Field(None, description="published by the source (Hub LFS files)")
    git_blob_sha1: str | None = Field(
        None, description="the Hub's git blob id of a non-LFS file: sha1('blob <size>\\0' + data)"
    )


class Manifest(Frozen):
    """What a complete copy holds: the source, pinned (a Hub commit), and its files."""

    source: str = Field(description="e.g. hf:org/model@<commit>, url:s3://b/p, path:/shared/m")
    revision: str | None = Field(None, description="the Hub commit the files come from")
    files: tuple[FileEntry, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


class Verdict(Frozen):
    """Whether a node's staged copy is usable, and if not, why (for people, not parsing)."""

    ok: bool
    detail: str


class DiskTooSmallError(RuntimeError):
    pass


class VerificationError(RuntimeError):
    pass


def staging_root(configured: str | None) -> Path:
    """This node's staging root (see the module docstring for the order)."""
    if configured:
        return Path(configured)
    from_env = os.environ.get(STAGING_DIR_ENV)
    return Path(from_env) if from_env else cache_root() / "staged"


def source_slug(kind: str, location: str, revision: str | None = None) -> str:
    """A directory name per source: readable, filesystem-safe, and the same on every node.

    The Hub revision (not its commit) is part of it, so the engine finds the copy offline."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "--", location.strip("/")).strip("-")
    digest = hashlib.sha256(f"{kind}:{location}@{revision}".encode()).hexdigest()[:10]
    suffix = f"@{re.sub(r'[^A-Za-z0-9._-]+', '-', revision)}" if revision else ""
    return f"{kind}--{readable[-80:]}{suffix}--{digest}"


def read_marker(directory: Path) -> Manifest | None:
    try:
        return Manifest.model_validate_json((directory / MARKER).read_text())
    except (OSError, ValueError):
        return None


def staged_copy_status(directory: Path, expected: Manifest | None = None) -> Verdict:
    """Is `directory` a complete staged copy (of `expected`, when given)?

    Checks the marker and every file's size, not hashes: cheap enough for every replica
    start and every preflight; hashes were checked by `stage` before the marker was written."""
    if not directory.is_dir():
        return Verdict(ok=False, detail=f"{directory} does not exist")
    marker = read_marker(directory)
    if marker is None:
        return Verdict(ok=False, detail=f"{directory} has no valid {MARKER} (staging unfinished)")
    if expected is not None and marker != expected:
        return Verdict(
            ok=False, detail=f"{directory} holds {marker.source}, not {expected.source}"
        )
    for entry in marker.files:
        problem = size_problem(directory, entry)
        if problem:
            return Verdict(ok=False, detail=problem)
    return Verdict(
        ok=True,
        detail=f"{marker.source}: {len(marker.files)} files, {marker.total_bytes / 1e9:.2f} GB",
    )


def size_problem(directory: Path, entry: FileEntry) -> str | None:
    path = directory / entry.path
    if not path.is_file():
        return f"{entry.path} is missing"
    size = path.stat().st_size
    if size != entry.size:
        return f"{entry.path} has {size} bytes, expected {entry.size}"
    return None


def file_problem(directory: Path, entry: FileEntry) -> str | None:
    """Why a staged file does not match its entry (size, then published hash), or None."""
    problem = size_problem(directory, entry)
    if problem or (entry.sha256 is None and entry.git_blob_sha1 is None):
        return problem
    sha256, git_sha1 = hashlib.sha256(), hashlib.sha1(f"blob {entry.size}\0".encode())
    with open(directory / entry.path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            sha256.update(chunk)
            git_sha1.update(chunk)
    if entry.sha256 is not None and sha256.hexdigest() != entry.sha256:
        return f"{entry.path}: sha256 {sha256.hexdigest()} != published {entry.sha256}"
    if entry.git_blob_sha1 is not None and git_sha1.hexdigest() != entry.git_blob_sha1:
        return f"{entry.path}: git blob id {git_sha1.hexdigest()} != published {entry.git_blob_sha1}"
    return None


def bytes_to_fetch(directory: Path, manifest: Manifest) -> int:
    """Bytes still missing: every file not yet at its full size counts whole, so a resumed
    partial file is over-counted (the safe side for a disk check)."""
    return sum(f.size for f in manifest.files if size_problem(directory, f) is not None)


def usable_bytes(root: Path) -> int:
    """Free bytes on the staging disk (or the capacity override), minus the headroom."""
    override = os.environ.get(CAPACITY_ENV)
    existing = root
    while not existing.exists():
        existing = existing.parent
    free = int(override) if override else shutil.disk_usage(existing).free
    return free - HEADROOM_BYTES


def disk_problem(root: Path, directory: Path, manifest: Manifest) -> str | None:
    needed, usable = bytes_to_fetch(directory, manifest), usable_bytes(root)
    if needed <= usable:
        return None
    return (
        f"{root}: {needed / 1e9:.2f} GB still to fetch, {max(usable, 0) / 1e9:.2f} GB usable "
        f"(free space minus {HEADROOM_BYTES / 1e9:.1f} GB headroom)"
    )


def bytes_on_disk(directory: Path) -> int:
    """Everything under `directory`, partial downloads included: the progress of a fetch."""
    if not directory.is_dir():
        return 0
    total = 0
    for path in directory.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except OSError:  # a partial file renamed between listing and stat
            continue
    return total


def write_marker(directory: Path, manifest: Manifest) -> None:
    # Write then rename: a crash never leaves a half-written marker that parses.
    partial = directory / f".{MARKER}.partial"
    partial.write_text(manifest.model_dump_json(indent=1))
    partial.replace(directory / MARKER)


Fetcher = Callable[[Manifest, Path], None]


class StageOutcome(Frozen):
    directory: str
    fetched: bool = Field(description="False when the copy was already complete (a no-op)")
    refetched: tuple[str, ...] = Field(description="files that failed verification once")
    total_bytes: int


def stage_here(
    root: Path, directory: Path, manifest: Manifest, fetch: Fetcher, rehash: bool = False
) -> StageOutcome:
    """Bring this node's copy of `manifest` to complete and verified; safe to re-run.

    A complete copy is left alone (a re-run is a no-op) unless `rehash`, which re-checks every
    hash of it too, for corruption that kept file sizes. Order matters: the disk check comes
    before any byte moves; a file that fails verification is deleted and fetched once more (a
    second failure means the source itself is wrong)."""
    stale: dict[str, str] = {}
    if staged_copy_status(directory, manifest).ok:
        stale = _remove_bad_files(directory, manifest) if rehash else {}
        if not stale:
            return StageOutcome(
                directory=str(directory),
                fetched=False,
                refetched=(),
                total_bytes=manifest.total_bytes,
            )
    problem = disk_problem(root, directory, manifest)
    if problem:
        raise DiskTooSmallError(problem)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MARKER).unlink(missing_ok=True)
    fetch(manifest, directory)
    bad = _remove_bad_files(directory, manifest)
    if bad:
        fetch(manifest, directory)
        still_bad = _remove_bad_files(directory, manifest)
        if still_bad:
            raise VerificationError("; ".join(still_bad.values()))
    write_marker(directory, manifest)
    return StageOutcome(
        directory=str(directory),
        fetched=True,
        refetched=tuple(sorted(stale | bad)),
        total_bytes=manifest.total_bytes,
    )


def _remove_bad_files(directory: Path, manifest: Manifest) -> dict[str, str]:
    bad = {}
    for entry in manifest.files:
        problem = file_problem(directory, entry)
        if problem:
            bad[entry.path] = problem
            (directory / entry.path).unlink(missing_ok=True)
    return bad
