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
        assert searcher.dense_index.manifest.secondary_count == report.new_chunks
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
    report = Indexer(embedder=embedder).run(small_repo, tmp_path / "idx")  # indexing again builds afresh
    assert report.changed_files == report.files and report.version != paths.name
    Searcher(tmp_path / "idx", embedder=embedder).close()


def test_dry_run_writes_nothing_and_estimates(small_repo, tmp_path, embedder):
    report = Indexer(embedder=embedder).run(small_repo, tmp_path / "idx", dry_run=True)
    assert report.dry_run and report.new_chunks > 0 and report.estimated_seconds is not None
    assert embedder.calls == []
    assert not (tmp_path / "idx").exists()


def test_index_dir_inside_repo_is_not_indexed(small_repo, embedder):
    Indexer(embedder=embedder).run(small_repo, small_repo / "my-index")
    again = Indexer(embedder=embedder).run(small_repo, small_repo / "my-index")
    assert again.up_to_date


# -- adversarial trees: the real Indexer publishes and reports every skip --------------------------


def test_adversarial_tree_indexes_what_it_can_and_reports_the_rest(tmp_path, embedder):
    import os

    outside = write_tree(tmp_path / "outside", {"secret.py": "def leaked_secret():\n    return 'hunter2'\n"})
    long_line = "PAYLOAD = '" + "ab" * 50_000 + "'\n"  # one 100 kB line among ordinary ones
    repo = write_tree(tmp_path / "repo", {
        "legacy.py": "# r\xe9sum\xe9 of the parser\ndef parse_legacy_header(line):\n    return line.split(':')\n".encode("latin-1"),
        "noext_binary": b"ELF" + bytes(range(256)) * 4,
        "garbage.txt": bytes(range(0x80, 0x100)) * 40,
        "bundle.js": "var a=" + "1," * 40_000 + "0;",  # minified: one huge line
        "big_line.py": "def keep_me():\n    return 1\n" * 200 + long_line,
        "src/ok.py": "def ordinary_function():\n    return 42\n",
    })
    os.symlink(outside, repo / "escape")
    os.symlink(outside / "secret.py", repo / "src" / "secret.py")
    os.symlink("..", repo / "src" / "loop")
    os.mkfifo(repo / "src" / "pipe.py")
    with open(os.fsencode(repo) + b"/bad\xff.py", "wb") as f:
        f.write(b"def bad_name():\n    pass\n")

    report = Indexer(embedder=embedder).run(repo, tmp_path / "idx")
    assert report.version and report.files == 3
    assert report.skipped == {"binary": 2, "minified": 1, "symlink": 3, "special file": 1, "undecodable name": 1}
    assert dict(report.skipped_files)["bad\\xff.py"] == "undecodable name"
    msgspec.json.encode(report)  # the --json report is always encodable
    searcher = Searcher(tmp_path / "idx", embedder=embedder)
    try:
        uris = {h.uri for h in searcher.search("leaked_secret hunter2", k=20, mode="bm25").hits}
        assert not any("secret" in u or u.startswith("escape") for u in uris)
        hit = searcher.search("parse_legacy_header", k=1, mode="bm25").hits[0]
        assert hit.uri == "legacy.py" and "r\ufffdsum\ufffd" in hit.text
        lines = (repo / "legacy.py").read_bytes().decode("utf-8", errors="replace").split("\n")
        assert hit.text == "\n".join(lines[hit.start_line - 1 : hit.end_line])  # line numbers exact
        long_hit = next(h for h in searcher.search("PAYLOAD", k=5, mode="bm25").hits if h.uri == "big_line.py")
        assert long_hit.end_line == 401 and "ab" * 1000 in long_hit.text
    finally:
        searcher.close()


def test_file_deleted_between_walk_and_read_is_reported_and_the_index_publishes(tmp_path, embedder, monkeypatch):
    from codeintel.indexing import pipeline

    repo = write_tree(tmp_path / "repo", {"a.py": "def alpha():\n    return 1\n", "b.py": "def beta():\n    return 2\n", "c.py": "def gamma():\n    return 3\n"})
    real_load = pipeline.load

    def load_after_deleting_b(candidate, settings):
        (repo / "b.py").unlink(missing_ok=True)  # gone after discovery, before it is read
        return real_load(candidate, settings)

    monkeypatch.setattr(pipeline, "load", load_after_deleting_b)
    report = Indexer(embedder=embedder).run(repo, tmp_path / "idx")
    assert report.version and report.files == 2
    assert report.skipped == {"deleted during indexing": 1} and report.skipped_files == [("b.py", "deleted during indexing")]
    manifest = IndexLayout(tmp_path / "idx").current().read_manifest()
    assert manifest.files == 2 and manifest.skipped == {"deleted during indexing": 1}
    searcher = Searcher(tmp_path / "idx", embedder=embedder)
    try:
        assert {h.uri for h in searcher.search("alpha beta gamma", k=10, mode="bm25").hits} == {"a.py", "c.py"}
    finally:
        searcher.close()


def test_every_file_deleted_mid_index_is_a_clear_error_and_writes_nothing(tmp_path, embedder, monkeypatch):
    from codeintel.indexing import pipeline

    repo = write_tree(tmp_path / "repo", {"a.py": "a = 1\n", "b.py": "b = 2\n"})
    real_load = pipeline.load

    def load_after_deleting(candidate, settings):
        candidate.path.unlink(missing_ok=True)
        return real_load(candidate, settings)

    monkeypatch.setattr(pipeline, "load", load_after_deleting)
    with pytest.raises(EmptyRepositoryError, match="2 deleted during indexing"):
        Indexer(embedder=embedder).run(repo, tmp_path / "idx")
    assert not (tmp_path / "idx").exists()


def test_non_utf8_index_path_is_an_input_error(tmp_path, small_repo, embedder):
    import os

    with pytest.raises(InputError, match="index path is not valid UTF-8"):
        Indexer(embedder=embedder).run(small_repo, os.fsdecode(os.fsencode(tmp_path) + b"/idx\xe9"))
