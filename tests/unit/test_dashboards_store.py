"""Dashboard store: slugs, path tricks, versions, hashes, immutability."""

from __future__ import annotations

import json
import os
import stat

import pytest

from lunarhub.dashboards.store import Store, StoreError, check_relpath, check_slug, content_hash, slugify


@pytest.mark.parametrize("title,slug", [
    ("LOLA explorer", "lola-explorer"),
    ("../../etc/passwd", "etc-passwd"),
    ("a/b\\c", "a-b-c"),
    ("Émission à Shackleton", "emission-a-shackleton"),
    ("Ｆｕｌｌｗｉｄｔｈ ＬＯＬＡ", "fullwidth-lola"),  # NFKC folds fullwidth letters
    ("x" * 80, "x" * 40),
])
def test_slugify_normalises(title, slug):
    assert slugify(title) == slug


def test_slugify_non_latin_titles_get_stable_hash_slugs():
    a, b = slugify("Рельеф южного полюса"), slugify("月球南极地形")
    assert a.startswith("dashboard-") and b.startswith("dashboard-") and a != b
    assert slugify("月球南极地形") == b
    for s in (a, b):
        check_slug(s)


@pytest.mark.parametrize("bad", ["../etc", "a/b", "..", "", "-x", "A", "слаг", "x" * 41, "a b", "a\x00b",
                                 "ｌｏｌａ"])
def test_explicit_bad_slugs_are_refused(bad):
    with pytest.raises(StoreError, match="invalid dashboard name"):
        check_slug(bad)


@pytest.mark.parametrize("bad", ["../x.csv", "/etc/passwd", "a/../../b", "", "a//b", "./a", "a\nb"])
def test_declared_file_paths_cannot_escape(bad):
    with pytest.raises(StoreError):
        check_relpath(bad)


def test_hash_depends_on_names_and_bytes():
    h = content_hash({"a.ipynb": b"1", "d.csv": b"2"})
    assert h == content_hash({"d.csv": b"2", "a.ipynb": b"1"})
    assert h != content_hash({"a.ipynb": b"1", "e.csv": b"2"})
    assert h != content_hash({"a.ipynb": b"1", "d.csv": b"3"})


def publish(store, files=None, **kw):
    files = files or {"nb.ipynb": b'{"cells": []}', "data/x.csv": b"1,2"}
    args = dict(title="T", description="D", notebook="nb.ipynb", files=files, share_with=["reviewers"],
                environment={"python": "3.11.2"})
    args.update(kw)
    return store.publish("cn-scientist", "demo", **args)


def test_versions_are_immutable_and_numbered(tmp_path):
    store = Store(tmp_path)
    v1, created = publish(store)
    assert created and v1.version == 1
    assert (v1.path / "files" / "data" / "x.csv").read_bytes() == b"1,2"
    meta = json.loads((v1.path / "metadata.json").read_text())
    assert meta["author"] == "cn-scientist" and meta["hash"] == content_hash(
        {"nb.ipynb": b'{"cells": []}', "data/x.csv": b"1,2"})
    assert meta["environment"] == {"python": "3.11.2"} and meta["files"] == ["data/x.csv", "nb.ipynb"]
    # Read-only for everyone: a later write must not change what reviewers saw.
    assert stat.S_IMODE((v1.path / "files" / "nb.ipynb").stat().st_mode) & 0o222 == 0
    assert store.get("cn-scientist", "demo").info["share_with"] == ["reviewers"]
    again, created = publish(store, extra={"share_groups": ["reviewers"]})
    assert store.get("cn-scientist", "demo").info["share_groups"] == ["reviewers"]
    assert not created and again.version == 1
    v2, created = publish(store, files={"nb.ipynb": b'{"cells": [1]}'})
    assert created and v2.version == 2
    dash = store.get("cn-scientist", "demo")
    assert [v.version for v in dash.versions] == [1, 2] and dash.latest.version == 2
    assert (dash.path / "apps" / "v1.py").exists() and (dash.path / "apps" / "v2.py").exists()
    assert (v1.path / "files" / "data" / "x.csv").read_bytes() == b"1,2"


def test_delete_version_keeps_number_and_unpublish_hides_everything(tmp_path):
    store = Store(tmp_path)
    publish(store)
    publish(store, files={"nb.ipynb": b"2"})
    store.delete_version("cn-scientist", "demo", 1)
    dash = store.get("cn-scientist", "demo")
    assert [v.version for v in dash.versions] == [2]
    v3, _ = publish(store, files={"nb.ipynb": b"3"})
    assert v3.version == 3, "a deleted version's number is never reused"
    store.unpublish("cn-scientist", "demo")
    assert store.all() == []
    assert store.get("cn-scientist", "demo").versions == []
    v4, created = publish(store, files={"nb.ipynb": b"3"})
    assert created and v4.version == 4 and [v.version for v in store.get("cn-scientist", "demo").versions] == [4]


def test_store_refusals(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(StoreError, match="title"):
        publish(store, title="  ")
    with pytest.raises(StoreError, match="notebook"):
        publish(store, notebook="other.ipynb")
    with pytest.raises(StoreError, match="invalid file path"):
        publish(store, files={"nb.ipynb": b"1", "../escape.txt": b"x"})
    with pytest.raises(StoreError, match="invalid"):
        store.publish("cn-scientist", "../x", title="t", description="", notebook="nb.ipynb",
                      files={"nb.ipynb": b"1"}, share_with=[], environment={})
    with pytest.raises(StoreError, match="owner"):
        store.publish("../root", "x", title="t", description="", notebook="nb.ipynb",
                      files={"nb.ipynb": b"1"}, share_with=[], environment={})
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.rglob("*"))
    assert not (tmp_path.parent / "escape.txt").exists() and not os.path.exists(tmp_path / "escape.txt")


def test_thumbnail_is_sealed_in_the_version_but_not_hashed(tmp_path):
    files = {"nb.ipynb": b'{"cells": []}', "data/x.csv": b"1,2"}
    picture = b"\x89PNG\r\n\x1a\n-not-checked-here"
    with_thumb, _ = publish(Store(tmp_path / "a"), files=dict(files), thumbnail=picture)
    without, _ = publish(Store(tmp_path / "b"), files=dict(files))
    assert with_thumb.thumbnail == with_thumb.path / "thumbnail.png"
    assert with_thumb.thumbnail.read_bytes() == picture
    assert stat.S_IMODE(with_thumb.thumbnail.stat().st_mode) & 0o222 == 0
    assert without.thumbnail is None
    assert with_thumb.meta["hash"] == without.meta["hash"] == content_hash(files)
    assert "thumbnail.png" not in with_thumb.meta["files"]
    # Same content again with another picture: still v1, the first picture stays (immutable).
    store = Store(tmp_path / "a")
    again, created = publish(store, files=dict(files), thumbnail=b"\x89PNG\r\n\x1a\nother")
    assert not created and again.thumbnail.read_bytes() == picture
    # A deleted version's picture goes with its files.
    publish(store, files={"nb.ipynb": b"2"})
    store.delete_version("cn-scientist", "demo", 1)
    assert not (with_thumb.path / "thumbnail.png").exists()
