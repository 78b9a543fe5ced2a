"""The official-archive path, on small fake archives with their own md5s (no network)."""
import os
import pickle

import pytest

from cnnlab.data import cifar, dataset as data, sources
from cnnlab.data.cifar import ARCHIVE, FOLDER
from cnnlab.errors import CnnlabError

from conftest import fake_cifar_members, spec_for, write_tar


def test_good_archive_loads_and_is_cached(fake_archive):
    archive, spec, members = fake_archive
    d = data.load(archive, spec=spec)
    assert d.train_x.shape == (100, 3, 32, 32) and d.test_x.shape == (20, 3, 32, 32)
    assert d.classes[0] == "airplane" and len(d.classes) == 10
    first = pickle.loads(members["data_batch_1"])
    assert d.train_x[0].flatten().tolist() == first[b"data"][0].tolist()  # CHW order as stored
    assert d.train_y[:20].tolist() == first[b"labels"]
    # The extracted folder is accepted as a source too, and gives the same data.
    again = data.load(archive.parent / FOLDER, spec=spec)
    assert again.fingerprint == d.fingerprint


def test_bad_archive_md5_is_refused_and_leaves_nothing(fake_archive):
    archive, spec, _ = fake_archive
    with open(archive, "ab") as f:
        f.write(b"tampered")
    before = set(os.listdir(archive.parent))
    with pytest.raises(CnnlabError, match="md5 .* expected .*truncated or altered"):
        data.load(archive, spec=spec)
    assert set(os.listdir(archive.parent)) == before  # no folder, no temp files
    assert not list(data.cache_dir().glob("*.tmp"))


@pytest.mark.parametrize("hostile", [
    {"../escaped.txt": b"x"},
    {"/tmp/cnnlab-absolute.txt": b"x"},
    {f"{FOLDER}/../../escaped.txt": b"x"},
    {f"{FOLDER}/payload.py": b"import os"},
])
def test_hostile_member_names_are_refused(tmp_path, hostile):
    members = fake_cifar_members()
    files = {f"{FOLDER}/{k}": v for k, v in members.items()} | hostile
    archive = write_tar(tmp_path / ARCHIVE, files)
    spec = spec_for(members, archive)
    with pytest.raises(CnnlabError, match="unexpected member"):
        cifar.extract(archive, tmp_path, spec)
    assert not (tmp_path / FOLDER).exists()
    assert not (tmp_path.parent / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    assert not os.path.exists("/tmp/cnnlab-absolute.txt")


def test_link_members_are_refused(tmp_path):
    members = fake_cifar_members()
    files = {f"{FOLDER}/{k}": v for k, v in members.items() if k != "data_batch_1"}
    archive = write_tar(tmp_path / ARCHIVE, files, links={f"{FOLDER}/data_batch_1": "/etc/passwd"})
    with pytest.raises(CnnlabError, match="unexpected member"):
        cifar.extract(archive, tmp_path, spec_for(members, archive))
    assert not (tmp_path / FOLDER).exists()


class Payload:
    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def test_altered_batch_file_is_never_unpickled(tmp_path):
    members = fake_cifar_members()
    spec = spec_for(members)
    folder = tmp_path / FOLDER
    folder.mkdir()
    for name, blob in members.items():
        (folder / name).write_bytes(blob)
    sentinel = tmp_path / "pwned"
    (folder / "data_batch_3").write_bytes(pickle.dumps(Payload(str(sentinel))))
    with pytest.raises(CnnlabError, match="data_batch_3 has md5 .* refusing to unpickle"):
        data.load(folder, spec=spec)
    assert not sentinel.exists()


def test_download_verifies_and_renames_only_a_good_file(fake_archive, tmp_path):
    archive, spec, members = fake_archive
    good = spec_for(members, archive, url=archive.as_uri())
    dest = tmp_path / "dl"
    path = cifar.download(dest, good)
    assert path == dest / ARCHIVE and path.read_bytes() == archive.read_bytes()
    bad = spec_for(members, None, url=archive.as_uri())  # wrong archive md5
    dest2 = tmp_path / "dl2"
    with pytest.raises(CnnlabError, match="download is corrupt"):
        cifar.download(dest2, bad)
    assert not dest2.exists()  # nothing left behind, not even the folder it made


def test_download_failure_says_where_to_put_the_archive(tmp_path):
    spec = cifar.CifarSpec(url=(tmp_path / "missing.tar.gz").as_uri())
    with pytest.raises(CnnlabError, match=f"could not download.*put {ARCHIVE}"):
        cifar.download(tmp_path / "dl", spec)
    assert not (tmp_path / "dl").exists()


def test_defaults_fall_back_to_the_download(fake_archive, tmp_path, monkeypatch):
    archive, spec, members = fake_archive
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sources, "SHARED_COPY", tmp_path / "no-shared-copy")
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "store"))
    # A cache of its own: the cache is keyed by content, and another test decoded this archive.
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    d = data.load(spec=spec_for(members, archive, url=archive.as_uri()))
    assert len(d.train_y) == 100
    assert (tmp_path / "store" / ARCHIVE).is_file() and (tmp_path / "store" / FOLDER).is_dir()
