"""Staging without Ray: a node's copy is verified, resumed, re-fetched when corrupt, refused
when the disk is too small, and the engine refuses a node without a complete copy."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cluster.staging import (
    CAPACITY_ENV,
    STAGING_DIR_ENV,
    DiskTooSmallError,
    FileEntry,
    Manifest,
    VerificationError,
    stage_here,
    staged_copy_status,
)
from cluster.weight_sources import fetcher_for, manifest_for
from deployments.config import WeightsNotStagedError, WeightsSource

DATA = {"config.json": b'{"a": 1}', "model.safetensors": bytes(range(256)) * 400}
MANIFEST = Manifest(
    source="test:model",
    files=tuple(
        FileEntry(path=p, size=len(d), sha256=hashlib.sha256(d).hexdigest())
        for p, d in DATA.items()
    ),
)


def _fetcher(calls: list[int], corrupt_times: int = 0):
    def fetch(manifest: Manifest, directory: Path) -> None:
        calls.append(1)
        for path, data in DATA.items():
            target = directory / path
            if not target.exists():
                bad = len(calls) <= corrupt_times and path == "model.safetensors"
                target.write_bytes(b"\0" * len(data) if bad else data)

    return fetch


def test_a_staged_copy_is_verified_marked_and_a_rerun_fetches_nothing(tmp_path):
    calls: list[int] = []
    outcome = stage_here(tmp_path, tmp_path / "copy", MANIFEST, _fetcher(calls))
    assert outcome.fetched and staged_copy_status(tmp_path / "copy", MANIFEST).ok
    again = stage_here(tmp_path, tmp_path / "copy", MANIFEST, _fetcher(calls))
    assert not again.fetched and len(calls) == 1


def test_a_corrupt_download_is_fetched_again_and_a_second_failure_is_an_error(tmp_path):
    calls: list[int] = []
    outcome = stage_here(tmp_path, tmp_path / "a", MANIFEST, _fetcher(calls, corrupt_times=1))
    assert outcome.refetched == ("model.safetensors",)
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == DATA["model.safetensors"]
    with pytest.raises(VerificationError, match="sha256"):
        stage_here(tmp_path, tmp_path / "b", MANIFEST, _fetcher([], corrupt_times=2))
    assert not staged_copy_status(tmp_path / "b").ok


def test_rehash_finds_corruption_that_kept_the_size(tmp_path):
    stage_here(tmp_path, tmp_path / "copy", MANIFEST, _fetcher([]))
    (tmp_path / "copy" / "model.safetensors").write_bytes(b"\1" * len(DATA["model.safetensors"]))
    assert staged_copy_status(tmp_path / "copy").ok  # sizes alone cannot tell
    outcome = stage_here(tmp_path, tmp_path / "copy", MANIFEST, _fetcher([]), rehash=True)
    assert outcome.refetched == ("model.safetensors",)


def test_too_little_disk_fails_before_any_byte_moves(tmp_path, monkeypatch):
    monkeypatch.setenv(CAPACITY_ENV, "1000")
    calls: list[int] = []
    with pytest.raises(DiskTooSmallError, match="still to fetch"):
        stage_here(tmp_path, tmp_path / "copy", MANIFEST, _fetcher(calls))
    assert calls == [] and not (tmp_path / "copy").exists()


def test_a_shared_path_source_resumes_a_partial_file(tmp_path, monkeypatch):
    source = tmp_path / "shared"
    source.mkdir()
    for path, data in DATA.items():
        (source / path).write_bytes(data)
    weights = WeightsSource(path=str(source))
    manifest = manifest_for(weights)
    assert [(f.path, f.size) for f in manifest.files] == [(p, len(d)) for p, d in sorted(DATA.items())]
    copy = tmp_path / "copy"
    copy.mkdir()
    # A partial file holding the first half: appending must continue from there.
    (copy / "model.safetensors.incomplete").write_bytes(DATA["model.safetensors"][:50_000])
    stage_here(tmp_path, copy, manifest, fetcher_for(weights))
    assert (copy / "model.safetensors").read_bytes() == DATA["model.safetensors"]


def test_the_engine_path_is_the_staged_copy_or_a_refusal_naming_stage(tmp_path, monkeypatch):
    monkeypatch.setenv(STAGING_DIR_ENV, str(tmp_path))
    weights = WeightsSource(hf_repo="org/m", revision="main")
    with pytest.raises(WeightsNotStagedError, match="python -m cluster stage"):
        weights.resolve()
    stage_here(tmp_path, weights.staged_directory(), MANIFEST, _fetcher([]))
    assert weights.resolve() == str(weights.staged_directory())


@pytest.mark.parametrize(
    ("fields", "staged"),
    [
        ({"hf_repo": "org/m"}, True),
        ({"url": "s3://bucket/m"}, True),
        ({"path": "/shared/m", "staging_dir": "/nvme/staged"}, True),
        ({"path": "/shared/m"}, False),
        ({"local": "smollm2-135m-instruct"}, False),
        ({"twin": "kimi-k2.5"}, False),
    ],
)
def test_which_sources_replicas_load_from_a_staged_copy(fields, staged):
    weights = WeightsSource(**fields)
    assert weights.is_staged is staged
    if fields.keys() == {"path"}:
        assert weights.resolve() == "/shared/m"  # used where it is, nothing to stage
