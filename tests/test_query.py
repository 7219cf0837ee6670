from __future__ import annotations

from codeintel.retrieval.query import mentioned_paths, prepare_query


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
