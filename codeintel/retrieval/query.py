"""Turn what the user typed into what each retriever should see.

Questions and identifiers pass through. Long texts (a pasted GitHub issue with code and a
traceback) are condensed for BM25: Lucene caps a query at 1024 clauses and a long bag of common
words drowns the few distinctive ones, so the lexical query keeps file names, dotted and compound
identifiers and code first, then the prose words, up to a term budget. The dense retriever reads
the text as written (its tokenizer truncates; the opening of an issue states the problem).
"""

from __future__ import annotations

import re

import msgspec

__all__ = ["PreparedQuery", "prepare_query", "mentioned_paths", "is_auxiliary_path", "LONG_QUERY_CHARS"]

_PATH = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.(?:py|pyi|js|jsx|ts|tsx|go|rs|java|c|h|cc|cpp|hpp|rb|md|rst|toml|yaml|yml|cfg|ini|json))\b")
_DOTTED = re.compile(r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+\b")
_IDENT = re.compile(r"\b[A-Za-z_]\w*\b")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]+")
_FENCE = re.compile(r"```.*?(?:```|$)", re.S)
_TRACE_FILE = re.compile(r'File "([^"]+)", line \d+')

# words that carry no information in an issue or a question about code
_STOP = frozenset(
    """a an and are as at be but by can could did do does for from had has have how i if in into is it its
    me my no not of on or our should so than that the their them then there these this those to too
    was we were what when where which while who why will with would you your also just like get got
    using use used one some any all more most very here hi hello thanks thank please issue bug error
    expected output code example problem version versions environment python import return""".split()
)


LONG_QUERY_CHARS = 400


class PreparedQuery(msgspec.Struct, frozen=True):
    text: str  # as typed (trimmed); what the dense retriever and the reranker read
    lexical: str  # condensed for BM25
    paths: tuple[str, ...]  # file paths or module paths the text mentions

    @property
    def is_report(self) -> bool:
        """A pasted issue or bug report rather than a question: the answer is code to change."""
        return len(self.text) >= LONG_QUERY_CHARS


def _is_compound(token: str) -> bool:
    return "_" in token.strip("_") or (any(c.isupper() for c in token[1:]) and any(c.islower() for c in token))


def mentioned_paths(text: str) -> tuple[str, ...]:
    """Repo-relative path fragments named in the text: files, traceback frames, dotted module names."""
    found: list[str] = []
    for m in _TRACE_FILE.finditer(text):
        found.append(m.group(1))
    found.extend(m.group(1) for m in _PATH.finditer(text))
    for m in _DOTTED.finditer(text):
        parts = m.group(0).split(".")
        if len(parts) >= 3 and all(p.islower() or "_" in p for p in parts[:-1]):
            found.append("/".join(parts[:-1]) + ".py")  # pkg.module.attr -> pkg/module.py
    cleaned = []
    for p in found:
        p = p.replace("\\", "/")
        if "site-packages/" in p:
            p = p.split("site-packages/", 1)[1]
        p = p.lstrip("./")
        if p and p not in cleaned:
            cleaned.append(p)
    return tuple(cleaned[:20])


def prepare_query(query: str, max_terms: int = 160) -> PreparedQuery:
    text = query.strip()
    paths = mentioned_paths(text)
    if len(text) < LONG_QUERY_CHARS:
        return PreparedQuery(text=text, lexical=text, paths=paths)
    code = " ".join(m.group(0) for m in _FENCE.finditer(text))
    prose = _FENCE.sub(" ", text)
    priority: list[str] = []
    for p in paths:
        priority.extend(re.split(r"[/.]", p))
    priority.extend(m.group(0) for m in _DOTTED.finditer(text))
    priority.extend(t for t in _IDENT.findall(text) if _is_compound(t))
    rest = [w for w in _WORD.findall(prose) + _WORD.findall(code)]
    terms: list[str] = []
    seen: set[str] = set()
    for term in priority + rest:
        key = term.lower()
        if key in seen or key in _STOP or len(key) < 2:
            continue
        seen.add(key)
        terms.append(term)
        if len(terms) >= max_terms:
            break
    return PreparedQuery(text=text, lexical=" ".join(terms), paths=paths)


_AUX_DIRS = frozenset({"test", "tests", "testing", "doc", "docs", "example", "examples", "benchmarks", "asv_bench", "ci"})
_AUX_FILE = re.compile(r"(^test_.*|.*_test\.\w+|.*\.(spec|test)\.[jt]sx?|conftest\.py|changes.*|changelog.*|history.*|whats-new.*)$", re.I)
_DOC_SUFFIX = (".md", ".rst", ".txt", ".adoc")


def is_auxiliary_path(uri: str) -> bool:
    """Tests, docs, examples and changelogs: rarely where a reported bug gets fixed."""
    parts = uri.lower().split("/")
    return bool(_AUX_DIRS.intersection(parts[:-1])) or bool(_AUX_FILE.match(parts[-1])) or parts[-1].endswith(_DOC_SUFFIX)
