"""Where weights come from: list a source's files (the manifest) and fetch them into a directory.

Three kinds, each fetch resumable:
- `hf_repo`: the Hugging Face Hub (or any server speaking its protocol at `$HF_ENDPOINT`),
  through huggingface_hub's own `snapshot_download`, which resumes `.incomplete` files. The
  manifest pins the revision to its commit and carries the hashes the Hub publishes: sha256
  of LFS files, the git blob id of the others.
- `url`: an object store (`s3://`, `gs://`, `az://`, ... any fsspec URL; the filesystem's
  package, e.g. s3fs, must be installed where `stage` runs). Sizes only: object-store ETags are
  an MD5 only for single-part uploads, so they are not a hash to trust for giant files.
- `path`: a shared filesystem mounted on every node (fsspec's local filesystem). Sizes only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from cluster.staging import FileEntry, Fetcher, Manifest

if TYPE_CHECKING:
    from deployments.config import WeightsSource

_COPY_CHUNK = 16 << 20
_PARTIAL_SUFFIX = ".incomplete"


def manifest_for(weights: WeightsSource) -> Manifest:
    """The files a complete copy of `weights` holds (one listing call to the source)."""
    if weights.hf_repo is not None:
        return _hf_manifest(weights.hf_repo, weights.revision, weights.allow_patterns)
    if weights.url is not None:
        return _fsspec_manifest("url", weights.url)
    if weights.path is not None:
        return _fsspec_manifest("path", weights.path)
    raise ValueError("local models are prepared on each machine, not staged")


def fetcher_for(weights: WeightsSource) -> Fetcher:
    if weights.hf_repo is not None:
        repo = weights.hf_repo
        return lambda manifest, directory: _hf_fetch(repo, manifest, directory)
    location = weights.url if weights.url is not None else weights.path
    if location is None:
        raise ValueError("local models are prepared on each machine, not staged")
    return lambda manifest, directory: _fsspec_fetch(location, manifest, directory)


def _hf_manifest(repo: str, revision: str | None, allow_patterns: list[str] | None) -> Manifest:
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile
    from huggingface_hub.utils import filter_repo_objects

    api = HfApi(endpoint=_hub_endpoint())
    commit = api.repo_info(repo, revision=revision).sha
    files = {
        f.path: f
        for f in api.list_repo_tree(repo, revision=commit, recursive=True)
        if isinstance(f, RepoFile)
    }
    chosen = sorted(filter_repo_objects(files, allow_patterns=allow_patterns))
    if not chosen:
        raise ValueError(f"{repo}@{commit}: no file matches allow_patterns {allow_patterns}")
    return Manifest(
        source=f"hf:{repo}@{commit}",
        revision=commit,
        files=tuple(
            FileEntry(
                path=path,
                size=files[path].size,
                sha256=files[path].lfs.sha256 if files[path].lfs else None,
                git_blob_sha1=None if files[path].lfs else files[path].blob_id,
            )
            for path in chosen
        ),
    )


def _hf_fetch(repo: str, manifest: Manifest, directory: Path) -> None:
    from huggingface_hub import snapshot_download

    # Exact paths as patterns: the manifest, not a re-listing, decides what is fetched.
    snapshot_download(
        repo,
        revision=manifest.revision,
        local_dir=directory,
        allow_patterns=[f.path for f in manifest.files],
        endpoint=_hub_endpoint(),
    )


def _hub_endpoint() -> str | None:
    # Read per call, not at import as huggingface_hub does: a long-lived worker process may
    # have imported it before HF_ENDPOINT was set for the staging task.
    return os.environ.get("HF_ENDPOINT")


def _fsspec_manifest(kind: str, location: str) -> Manifest:
    fs, root = _filesystem(location)
    found = fs.find(root, detail=True)
    files = tuple(
        FileEntry(path=_relative(name, root), size=int(info["size"]))
        for name, info in sorted(found.items())
        if info.get("type") == "file"
    )
    if not files:
        raise ValueError(f"{location}: no files")
    return Manifest(source=f"{kind}:{location}", files=files)


def _fsspec_fetch(location: str, manifest: Manifest, directory: Path) -> None:
    fs, root = _filesystem(location)
    for entry in manifest.files:
        _copy_resumable(fs, f"{root.rstrip('/')}/{entry.path}", directory / entry.path, entry.size)


def _copy_resumable(fs, remote: str, local: Path, size: int) -> None:
    """Copy into `<name>.incomplete`, continuing from its length, then rename into place."""
    if local.is_file() and local.stat().st_size == size:
        return
    local.parent.mkdir(parents=True, exist_ok=True)
    partial = local.with_name(local.name + _PARTIAL_SUFFIX)
    offset = partial.stat().st_size if partial.is_file() else 0
    if offset > size:  # the source changed under us: start over
        partial.unlink()
        offset = 0
    with fs.open(remote, "rb") as source, open(partial, "ab") as target:
        source.seek(offset)
        while chunk := source.read(_COPY_CHUNK):
            target.write(chunk)
    partial.replace(local)


def _filesystem(location: str):
    import fsspec

    fs, root = fsspec.core.url_to_fs(location)
    return fs, root.rstrip("/")


def _relative(name: str, root: str) -> str:
    return name[len(root) :].lstrip("/")
