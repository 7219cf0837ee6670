from __future__ import annotations

import signal
import subprocess
import sys
import time

import msgspec
import pytest

from codeintel.config import BGE_SMALL, Settings
from codeintel.errors import ContractMismatchError, EmptyRepositoryError, IndexFormatError, InputError
from codeintel.indexing.pipeline import Indexer
from codeintel.retrieval.searcher import Searcher
from codeintel.storage.catalog import Catalog
from codeintel.storage.layout import IndexLayout

from conftest import SMALL_REPO, git_init, write_tree


def test_full_index_then_search_finds_the_right_file(small_repo, tmp_path, embedder):
    report = Indexer(embedder=embedder).run(small_repo, tmp_path / "idx")
    assert report.files == 5
    assert report.chunks == report.new_chunks == report.embedded > 0
    paths = IndexLayout(tmp_path / "idx").current()
    manifest = paths.read_manifest()
    assert manifest.contract == BGE_SMALL and manifest.chunks == report.chunks
    assert manifest.dense_primary == manifest.lexical_docs == report.chunks
    searcher = Searcher(tmp_path / "idx", embedder=embedder)
    try:
        for mode in ("dense", "bm25", "hybrid"):
            result = searcher.search("read the json configuration file", k=3, mode=mode)
            assert result.hits[0].uri == "app/config.py", mode
            assert set(result.timings_ms) >= {"fuse", "hydrate", "total"}
        hit = searcher.search("getLogger", k=1, mode="bm25").hits[0]
        lines = (small_repo / hit.uri).read_text().split("\n")
        assert hit.text == "\n".join(lines[hit.start_line - 1 : hit.end_line])
    finally:
        searcher.close()


def test_reindex_without_changes_embeds_nothing(small_repo, tmp_path, embedder):
    first = Indexer(embedder=embedder).run(small_repo, tmp_path / "idx")
    embedder.reset()
    again = Indexer(embedder=embedder).run(small_repo, tmp_path / "idx")
    assert again.up_to_date and again.version == first.version
    assert embedder.calls == []


def test_incremental_reindex_touches_only_changed_files(small_repo, tmp_path, embedder):
    index = tmp_path / "idx"
    first = Indexer(embedder=embedder).run(small_repo, index)
    embedder.reset()
    (small_repo / "app" / "config.py").write_text("import tomllib\n\n\ndef load_settings(path):\n    return tomllib.load(open(path, 'rb'))\n")
    (small_repo / "web" / "main.js").unlink()
    (small_repo / "app" / "new_module.py").write_text("def brand_new_feature():\n    return 42\n")
    report = Indexer(embedder=embedder).run(small_repo, index)
    assert (report.changed_files, report.removed_files) == (2, 1)
    embedded = embedder.texts
    assert embedded and all(t.startswith(("app/config.py", "app/new_module.py")) for t in embedded)
    assert report.version != first.version
    searcher = Searcher(index, embedder=embedder)
    try:
        uris = {h.uri for h in searcher.search("renderPage Router route", k=10, mode="bm25").hits}
        assert "web/main.js" not in uris
        assert searcher.search("brand_new_feature", k=1, mode="hybrid").hits[0].uri == "app/new_module.py"
        assert searcher.search("tomllib load settings", k=1, mode="dense").hits[0].uri == "app/config.py"
        assert searcher.dense.manifest.secondary_count == report.new_chunks
        catalog_uris = {r.uri for r in searcher.catalog.query_by_ids(searcher.catalog.ids_in_scope(searcher_scope()))}
        assert "web/main.js" not in catalog_uris and "app/new_module.py" in catalog_uris
    finally:
        searcher.close()
    # the embedding cache serves a revert without embedding again
    embedder.reset()
    (small_repo / "web").mkdir(exist_ok=True)
    write_tree(small_repo, {"web/main.js": SMALL_REPO["web/main.js"]})
    restored = Indexer(embedder=embedder).run(small_repo, index)
    assert restored.new_chunks > 0 and restored.embedded == 0 and embedder.calls == []
    compacted = Indexer(embedder=embedder).run(small_repo, index, compact=True)
    assert compacted.compacted and compacted.embedded == 0


def searcher_scope():
    from codeintel.storage.scope import Scope

    return Scope()


def test_commit_recorded_and_ids_stable_across_runs(tmp_path, embedder):
    repo = write_tree(tmp_path / "repo", {"a.py": "def alpha():\n    return 1\n"})
    commit = git_init(repo, remote="https://github.com/acme/alpha.git")
    r1 = Indexer(embedder=embedder).run(repo, tmp_path / "i1")
    Indexer(embedder=embedder).run(repo, tmp_path / "i2")
    assert r1.repo == "acme/alpha" and r1.commit == commit
    ids = []
    for idx in ("i1", "i2"):
        paths = IndexLayout(tmp_path / idx).current()
        catalog = Catalog(paths.catalog)
        ids.append(sorted(catalog.ids_in_scope(searcher_scope())))
        assert {r.commit for r in catalog.query_by_ids(ids[-1])} == {commit}
        catalog.close()
    assert ids[0] == ids[1]


class ExplodingEmbedder:
    """Stands for a user's Ctrl-C in the middle of embedding."""

    contract = BGE_SMALL

    def embed(self, texts):
        raise KeyboardInterrupt

    embed_queries = embed


def assert_serves(index, version: str, embedder, query: str, uri: str) -> None:
    """The published version is still `version` and answers `query` with `uri` first."""
    assert IndexLayout(index).current_name() == version
    searcher = Searcher(index, embedder=embedder)
    try:
        assert searcher.search(query, k=1, mode="bm25").hits[0].uri == uri
    finally:
        searcher.close()


def test_interrupted_index_keeps_the_previous_version(small_repo, tmp_path, embedder):
    index = tmp_path / "idx"
    first = Indexer(embedder=embedder).run(small_repo, index)
    (small_repo / "app" / "config.py").write_text("def changed():\n    pass\n")
    with pytest.raises(KeyboardInterrupt):
        Indexer(embedder=ExplodingEmbedder()).run(small_repo, index)
    assert_serves(index, first.version, embedder, "load_config json", "app/config.py")
    # and the next run succeeds, clearing the half-written build
    Indexer(embedder=embedder).run(small_repo, index)
    assert not list((index / "versions").glob(".build-*"))


def test_killed_index_process_keeps_the_previous_version(tmp_path, embedder):
    repo = write_tree(tmp_path / "repo", {f"pkg/m{i}.py": f"def f{i}(x):\n    '''Function {i}.'''\n    return x + {i}\n" for i in range(3)})
    index = tmp_path / "idx"
    first = Indexer(embedder=embedder).run(repo, index)
    for i in range(400):
        (repo / "pkg" / f"n{i}.py").write_text(f"def g{i}(y):\n    '''Another function number {i} with some words.'''\n    return y * {i}\n")
    proc = subprocess.Popen([sys.executable, "-m", "codeintel.cli", "index", str(repo), "--index", str(index), "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((index / "versions").glob(".build-*")) and not list((index / "cache").glob("*.wal")):
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    time.sleep(0.5)
    assert proc.poll() is None, "the indexer finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert_serves(index, first.version, embedder, "f1", "pkg/m1.py")


def test_contract_mismatch_fails_naming_both_values(small_repo, tmp_path, embedder):
    Indexer(embedder=embedder).run(small_repo, tmp_path / "idx")
    other = msgspec.structs.replace(BGE_SMALL, dim=768)
    with pytest.raises(ContractMismatchError, match=r"dim: index has 384, configured embedder has 768"):
        Searcher(tmp_path / "idx", Settings(embedding=other))
    with pytest.raises(ContractMismatchError, match="model_id"):
        Indexer(Settings(embedding=msgspec.structs.replace(BGE_SMALL, model_id="other/model")), embedder=embedder).run(small_repo, tmp_path / "idx")


def test_bad_inputs_are_clear_errors(tmp_path, embedder):
    with pytest.raises(InputError, match="does not exist"):
        Indexer(embedder=embedder).run(tmp_path / "missing", tmp_path / "idx")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EmptyRepositoryError, match="nothing to index"):
        Indexer(embedder=embedder).run(empty, tmp_path / "idx")
    only_binary = write_tree(tmp_path / "bin", {"a.png": b"\x89PNG", "b.dat": b"\x00\x01"})
    with pytest.raises(EmptyRepositoryError, match="binary"):
        Indexer(embedder=embedder).run(only_binary, tmp_path / "idx")
    not_an_index = write_tree(tmp_path / "home", {"notes.txt": "mine\n"})
    repo = write_tree(tmp_path / "repo", {"a.py": "a = 1\n"})
    with pytest.raises(IndexFormatError, match="not a codeintel index"):
        Indexer(embedder=embedder).run(repo, not_an_index)
    assert (not_an_index / "notes.txt").read_text() == "mine\n"


def test_incompatible_format_version_is_rejected(small_repo, tmp_path, embedder):
    Indexer(embedder=embedder).run(small_repo, tmp_path / "idx")
    paths = IndexLayout(tmp_path / "idx").current()
    raw = msgspec.json.decode(paths.manifest.read_bytes())
    raw["format_version"] = 99
    paths.manifest.write_bytes(msgspec.json.encode(raw))
    with pytest.raises(IndexFormatError, match="format version 99"):
        Searcher(tmp_path / "idx", embedder=embedder)


def test_dry_run_writes_nothing_and_estimates(small_repo, tmp_path, embedder):
    report = Indexer(embedder=embedder).run(small_repo, tmp_path / "idx", dry_run=True)
    assert report.dry_run and report.new_chunks > 0 and report.estimated_seconds is not None
    assert embedder.calls == []
    assert not (tmp_path / "idx").exists()


def test_index_dir_inside_repo_is_not_indexed(small_repo, embedder):
    Indexer(embedder=embedder).run(small_repo, small_repo / "my-index")
    again = Indexer(embedder=embedder).run(small_repo, small_repo / "my-index")
    assert again.up_to_date
