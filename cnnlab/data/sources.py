"""Where a dataset is and the key of its decoded cache, without torch: so the cnnlab command can
compute the key in its helper process while it imports torch (cnnlab/helper.py).

    src = resolve("data/pets")                # Source("folder", Path("data/pets"))
    key = source_fingerprint(src, 96)         # the cache file's name, from the files' content
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from . import cifar, decode, imagefolder, sourcekey
from .. import helper
from ..errors import CnnlabError

CACHE_FORMAT = 2  # 2: keyed by content (sourcekey.py)
SHARED_COPY = Path("../shared/datasets/cifar10-jpeg")


@dataclass
class Source:
    kind: str  # 'folder' (image folder), 'batches' (cifar-10-batches-py), 'archive' (tar.gz)
    path: Path


def cache_dir() -> Path:
    return Path(os.environ.get("CNNLAB_CACHE") or Path.home() / ".cache" / "cnnlab")


def find_source(path: Path) -> Source | None:
    """The dataset at path: an image folder, a cifar-10-batches-py folder or the archive,
    either at path itself or directly inside it."""
    path = Path(path)
    if path.is_file():
        return Source("archive", path) if path.name.endswith((".tar.gz", ".tgz")) else None
    if not path.is_dir():
        return None
    if imagefolder.is_image_folder(path):
        return Source("folder", path)
    if (path / "data_batch_1").is_file():
        return Source("batches", path)
    if (path / cifar.FOLDER / "data_batch_1").is_file():
        return Source("batches", path / cifar.FOLDER)
    if (path / cifar.ARCHIVE).is_file():
        return Source("archive", path / cifar.ARCHIVE)
    return None


def default_candidates() -> list[Path]:
    env = os.environ.get("CNNLAB_DATA")
    return ([Path(env)] if env else []) + [Path("data"), SHARED_COPY]


def resolve(path: Path | str | None = None, download: bool = True,
            spec: cifar.CifarSpec = cifar.OFFICIAL) -> Source:
    """The source for --data PATH, or the first default that holds a dataset, else a download."""
    if path is not None:
        path = Path(path).expanduser()
        if not path.exists():
            raise CnnlabError(f"data path {path} does not exist: pass an image folder "
                              f"(train/<class>/, test/<class>/), {cifar.ARCHIVE} or {cifar.FOLDER}/")
        found = find_source(path)
        if found is None:
            raise CnnlabError(f"{path} holds no dataset: expected {path}/train/<class>/ and "
                              f"{path}/test/<class>/, {cifar.ARCHIVE}, or {cifar.FOLDER}/")
        return found
    candidates = default_candidates()
    for c in candidates:
        found = find_source(c)
        if found is not None:
            return found
    where = ", ".join(str(c) for c in candidates)
    if not download:
        raise CnnlabError(f"no dataset found in {where}: put {cifar.ARCHIVE} or an image "
                          f"folder at one of them, or pass --data PATH")
    return Source("archive", cifar.download(candidates[0], spec))


def source_fingerprint(src: Source, size: int, spec: cifar.CifarSpec = cifar.OFFICIAL,
                       resize: str = decode.DEFAULT_RULE) -> str:
    """The cache key: a hash of the content (and, for a folder, the labels) decoding would read,
    and for a folder the decoder's identity (resize rule, size, Pillow's version).

    See sourcekey.py: content hashes are kept in an index in the cache folder, so an unchanged
    source costs one stat per file. The key the command's helper computed (key_request) is
    taken instead where it is for the same source and settings.
    """
    job = helper.take(KEY_JOB)
    got = job.result() if job is not None else None
    if got and got[:4] == [src.kind, str(src.path.resolve()), size, resize] and spec == cifar.OFFICIAL:
        return got[4]
    return _fingerprint(src, size, spec, resize)


def _fingerprint(src: Source, size: int, spec: cifar.CifarSpec, resize: str) -> str:
    checks = json.dumps([spec.archive_md5, sorted(spec.checked.items())])
    how = decode.identity(size, resize) if src.kind == "folder" else checks
    extra = f"cnnlab-cache-{CACHE_FORMAT}|{size}|{how}"
    return sourcekey.source_key(src.kind, src.path, cache_dir(), extra, tuple(sorted(spec.checked)))


KEY_JOB = "data-key"  # the helper job (cnnlab/helper.py) the train command submits: key_request


def key_request(path, size: int, resize: str) -> list | None:
    """[kind, absolute path, size, resize, cache key] of the dataset at path (None: the defaults),
    for the usual CIFAR-10 spec; None where path holds no dataset (loading then says why).

    The train command runs this in its helper process while it imports torch (60,000 stats of
    CIFAR-10's files: 0.45 s); source_fingerprint takes the key where the source and settings
    are its own. The files are then read a few seconds after their key was taken, where they
    would be read a moment after: a change within that window (the same race as between any
    key and its read, only longer) leaves the cache under the earlier key."""
    try:
        src = resolve(path, download=False)
    except CnnlabError:
        return None
    return [src.kind, str(src.path.resolve()), size, resize, _fingerprint(src, size, cifar.OFFICIAL, resize)]
