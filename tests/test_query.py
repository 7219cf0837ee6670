from __future__ import annotations

import pytest

from codeintel.retrieval.query import is_auxiliary_path, mentioned_paths, mentioned_symbols, prepare_query


def test_short_queries_pass_through():
    q = prepare_query("  where is the json provider configured?  ")
    assert q.text == q.lexical == "where is the json provider configured?"


def test_paths_from_tracebacks_files_and_modules():
    text = (
        'Traceback (most recent call last):\n  File "/usr/lib/python3/site-packages/xarray/core/dataset.py", line 12, in f\n'
        "see also src/flask/cli.py and requests.sessions.Session plus xarray.core.merge.merge_core"
    )
    paths = mentioned_paths(text)
    assert paths[:2] == ("xarray/core/dataset.py", "src/flask/cli.py")
    assert "xarray/core/merge.py" in paths


def test_long_issue_condensed_with_identifiers_first_and_bounded():
    issue = (
        "Title: Dataset.to_netcdf fails with engine h5netcdf\n\n" + "I think this is a bug and it happens when I do things. " * 40
        + "\n```python\nds = xr.open_dataset('x.nc')\nds.to_netcdf('y.nc', engine='h5netcdf')\n```\n"
        + "Many many words " * 200
    )
    q = prepare_query(issue, max_terms=50)
    terms = q.lexical.split()
    assert len(terms) <= 50
    assert terms[0] in ("Dataset.to_netcdf", "ds.to_netcdf") or "Dataset.to_netcdf" in terms[:5]
    assert "h5netcdf" in terms and "to_netcdf" in q.lexical
    assert "the" not in [t.lower() for t in terms]
    assert q.text.startswith("Title: Dataset.to_netcdf")


# -- long texts: the 100k-character limit, condensation for the dense retriever and the reranker --------------
@pytest.mark.parametrize("text, symbols", [
    ("how is a new index version published atomically", ()),
    ("what does `IndexLayout.publish()` do when CURRENT is missing", ("IndexLayout", "publish")),
    ("why does xr.open_dataset(path) ignore decode_times", ("open_dataset", "decode_times")),
    ('Traceback:\n  File "a/b.py", line 3, in _lazy_sha1\n    return hashlib.sha1(x)\nsessions.SecureCookieSessionInterface fails',
     ("_lazy_sha1", "sha1", "SecureCookieSessionInterface")),
])
def test_symbols_are_names_used_the_way_code_uses_them(text, symbols):
    assert mentioned_symbols(text)[: len(symbols)] == symbols and prepare_query(text).symbols == mentioned_symbols(text)


import time  # noqa: E402


from codeintel.retrieval.query import CONDENSED_CHARS, LONG_QUERY_CHARS, MAX_QUERY_CHARS, PreparedQuery, condense_text  # noqa: E402


def _swe_issue(log_lines: int = 2000) -> str:
    """A SWE-bench-style issue: title, a paragraph, code, a long log, a traceback and an environment dump."""
    frames = "".join(
        f'  File "/usr/lib/python3.11/site-packages/xarray/core/mod_{i}.py", line {10 + i}, in step_{i}\n    result = helper_{i}(data)\n'
        for i in range(40)
    )
    return (
        "Dataset.to_zarr silently drops encoding for chunked variables\n\n"
        "When I write a chunked dataset with `to_zarr`, the encoding I pass is ignored and the store ends up "
        "with default chunks. This worked in 2023.1.\n\n"
        "```python\nds = xr.open_dataset('in.nc', chunks={'time': 10})\nds.to_zarr('out.zarr', encoding={'t': {'chunks': (5,)}})\n```\n\n"
        "Log output:\n```\n" + "".join(f"2024-01-01 12:00:{i % 60:02d} INFO worker-{i % 7} processed block {i}\n" for i in range(log_lines))
        + "```\n\nTraceback (most recent call last):\n" + frames
        + "xarray.core.errors.EncodingConflict: chunks (5,) do not divide the dask chunks (10,)\n"
        + "ValueError: Specified zarr chunks encoding['chunks']=(5,) would overlap multiple dask chunks\n\n"
        + "INSTALLED VERSIONS\n" + "".join(f"package_{i}: 1.{i}.0\nLC_ALL_{i}: None\n" for i in range(30))
    )


def test_limits_are_ordered():
    assert MAX_QUERY_CHARS >= 100_000 and LONG_QUERY_CHARS < CONDENSED_CHARS < MAX_QUERY_CHARS


def test_texts_up_to_the_condense_limit_are_read_as_typed():
    short = prepare_query("where is the json provider configured?")
    assert not short.condensed and not short.is_report and short.chars == len(short.text)
    issue = ("Flask blueprint names with dots break url_for. " * 80)[: CONDENSED_CHARS - 10]
    q = prepare_query("  " + issue + "  ")
    assert q.text == issue.strip() and not q.condensed and q.is_report


def test_a_long_issue_is_condensed_keeping_the_opening_and_the_distinctive_lines():
    issue = _swe_issue()
    assert len(issue) > 80_000
    q = prepare_query(issue)
    assert q.condensed and q.is_report and q.chars == len(issue.strip())
    assert len(q.text) <= CONDENSED_CHARS
    assert q.text.startswith("Dataset.to_zarr silently drops encoding for chunked variables\n\nWhen I write a chunked dataset")
    lines = q.text.splitlines()
    assert "ValueError: Specified zarr chunks encoding['chunks']=(5,) would overlap multiple dask chunks" in lines
    assert any(ln.startswith("xarray.core.errors.EncodingConflict: chunks (5,)") for ln in lines)
    # the outermost and innermost frames: the call into the library and where it raised
    assert any("mod_0.py" in ln for ln in lines) and any("mod_39.py" in ln for ln in lines)
    assert not any(ln.startswith(("package_", "LC_ALL_")) for ln in lines)  # an environment dump is noise
    assert "result = helper_20(data)" in lines  # code lines rank by identifiers after the edge frames
    assert not any("mod_20.py" in ln for ln in lines)  # a middle frame does not crowd them out
    # chosen lines keep their order in the text
    assert q.text.index("mod_0.py") < q.text.index("mod_39.py") < q.text.index("EncodingConflict") < q.text.index("ValueError:")
    # BM25 still gets its identifiers-first query of the whole text, and the paths the traceback names
    assert "to_zarr" in q.lexical and len(q.lexical.split()) <= 160
    assert q.paths[0] == "xarray/core/mod_0.py"


def test_condense_text_is_bounded_and_leaves_short_texts_alone():
    assert condense_text("short text", limit=100) == "short text"
    text = _swe_issue(log_lines=200)
    for limit in (100, 1_000, 2_000, CONDENSED_CHARS):
        assert len(condense_text(text, limit)) <= limit


@pytest.mark.parametrize("uri, auxiliary", [
    ("tests/test_app.py", True), ("src/pkg/conftest.py", True), ("docs/api.rst", True), ("CHANGES.rst", True),
    (".github/ISSUE_TEMPLATE/bugreport.yml", True), ("src/pkg/_vendor/six.py", True), ("third_party/zlib/inflate.c", True),
    ("src/pkg/core.py", False), ("xarray/core/formatting.py", False), ("requests/packages/urllib3/util.py", False),
])
def test_auxiliary_paths_are_where_reports_rarely_get_fixed(uri, auxiliary):
    assert is_auxiliary_path(uri) is auxiliary


def test_duplicated_issue_text_is_kept_once():
    body = "Unicode method names cause UnicodeDecodeError\n" + "".join(f"line {i} calls session.send_request_{i}()\n" for i in range(150))
    q = prepare_query(body + "\n" + body)  # SWE-bench texts sometimes repeat the whole issue
    lines = q.text.splitlines()
    assert q.condensed and len(lines) == len(set(lines))


def test_a_prepared_query_built_without_the_new_fields_still_knows_a_report():
    assert PreparedQuery(text="x" * 500, lexical="x", paths=()).is_report
    assert not PreparedQuery(text="x", lexical="x", paths=()).condensed


_N = MAX_QUERY_CHARS
_TRACEBACK = "Traceback (most recent call last):\n" + "".join(
    f'  File "/site-packages/pkg/sub_{i}/mod_{i}.py", line {i}, in func_{i}\n    obj.method_{i}(arg)\n' for i in range(3000)
)
ADVERSARIAL = {
    "one token": "a" * _N,
    "path segments": "a/" * (_N // 2),
    "dots": "." * _N,
    "dotted": "a." * (_N // 2),
    "Camel dotted": "Ab." * (_N // 3),
    "underscores": "a_" * (_N // 2),
    "traceback": _TRACEBACK[: _N - 20] + "\nValueError: boom",
    "non-ascii": ("é日本語ß🙂 ñ\u2028" * _N)[:_N],
    "newlines": "x" + "\n" * (_N - 2) + "y",
    "unclosed quotes": ('File "' * _N)[:_N],
    "fences": ("```" * _N)[:_N],
    "exception-like lines": (("E   " + "Ab." * 95 + "\n") * _N)[:_N],
    "frame-like lines": (("at " + "a:" * 140 + "\n") * _N)[:_N],
    "identifier lines": ("foo_bar.baz_qux CamelCase " * _N)[:_N],
    "urls": ("http://" + "a/" * 100 + " ") * (_N // 208),
    "colons": ":" * _N,
    "distinct long words": "".join(f"{'aB' * 145}{i:07d}\n" for i in range(_N // 298))[:_N],
    "mixed path noise": ("x.py/" * _N)[:_N],
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_adversarial_long_inputs_prepare_quickly(name):
    text = ADVERSARIAL[name]
    assert len(text) <= MAX_QUERY_CHARS
    start = time.perf_counter()
    q = prepare_query(text)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"{name}: {elapsed:.2f}s (typically ~0.1 s: a regex went superlinear?)"
    assert len(q.text) <= CONDENSED_CHARS and len(q.paths) <= 20
    assert all(len(term) <= 100 for term in q.lexical.split())  # a 100k blob never becomes one BM25 term
