"""Turn what the user typed into what each retriever should see.

Questions and identifiers pass through. Long texts (a pasted GitHub issue with code and a
traceback) are condensed for BM25: Lucene caps a query at 1024 clauses and a long bag of common
words drowns the few distinctive ones, so the lexical query keeps file names, dotted and compound
identifiers and code first, then the prose words, up to a term budget.

The dense retriever and the reranker read ``text``. Their tokenizers keep 256 tokens (embedder) and
about 128 (the query's half of a cross-encoder pair against a long passage): the first 500 to 1,000
characters. A text up to :data:`CONDENSED_CHARS` is passed as typed. A longer one (a whole log pasted, up to
:data:`MAX_QUERY_CHARS`) would only cost tokenizer time, so it is condensed: the opening, which
states the problem, then the most distinctive lines (exception lines, the outer and inner
traceback frames, lines dense with code identifiers) in their original order.

Every pattern here is linear in its input: none nests quantifiers over overlapping classes, and
line classification reads at most :data:`_SCAN` characters of a line.
"""

from __future__ import annotations

import re

import msgspec

__all__ = [
    "PreparedQuery", "prepare_query", "condense_text", "mentioned_paths", "mentioned_symbols", "is_auxiliary_path", "query_terms",
    "LONG_QUERY_CHARS", "MAX_QUERY_CHARS", "CONDENSED_CHARS",
]

# A whole SWE-bench issue with its logs (24,770 characters was seen); HTTP, CLI and MCP accept this.
MAX_QUERY_CHARS = 100_000
# From here a query is a report rather than a question, and BM25 gets a condensed query.
LONG_QUERY_CHARS = 400
# Longer texts are condensed to at most this for the dense retriever and the reranker.
CONDENSED_CHARS = 4_000
_HEAD_CHARS = 800  # the opening kept verbatim: title and first paragraph
_LINE_CHARS = 300  # a kept line is cut to this
_SCAN = 300  # characters of a line that classify it
_MAX_TERM_CHARS = 100  # a longer "term" in a long query is a blob (base64, a hash, a run of noise)
_EDGE_FRAMES = 3  # traceback frames kept from each end: the call into the library and the raise

_PATH = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.(?:py|pyi|js|jsx|ts|tsx|go|rs|java|c|h|cc|cpp|hpp|rb|md|rst|toml|yaml|yml|cfg|ini|json))\b")
_DOTTED = re.compile(r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+\b")
_IDENT = re.compile(r"\b[A-Za-z_]\w*\b")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]+")
_FENCE = re.compile(r"```.*?(?:```|$)", re.S)
_TRACE_FILE = re.compile(r'File "([^"]+)", line \d+')
# "ValueError: ...", "E   pkg.errors.BadThing: ...", "KeyboardInterrupt" (matched on a stripped line)
_EXC_NAME = re.compile(r"(?:E\s+)?((?:[A-Za-z_]\w*\.)*)([A-Za-z_]\w*)(?::|$)")
_EXC_SUFFIX = ("Error", "Exception", "Warning", "Interrupt", "Exit", "Failure", "Fault")
_EXC_WORDS = re.compile(r"(?:(?:error|fatal|panic)(?:\[\w+\])?:|caused by:|exception in thread\b)", re.I)
_URL = re.compile(r"\b\w+://\S*")  # \b: one try per word, not one per character
_KEY_VALUE = re.compile(r"[\w.-]+\s*:\s*\S*$")  # "numpy: 1.21.2", "LC_ALL: None": an environment dump
_LINE_NUMBER = re.compile(r":\d")  # "at com.x.Y.f(Y.java:12)", "at /src/app.js:3:7"

# words that carry no information in an issue or a question about code
_STOP = frozenset(
    """a an and are as at be but by can could did do does for from had has have how i if in into is it its
    me my no not of on or our should so than that the their them then there these this those to too
    was we were what when where which while who why will with would you your also just like get got
    using use used one some any all more most very here hi hello thanks thank please issue bug error
    expected output code example problem version versions environment python import return""".split()
)


class PreparedQuery(msgspec.Struct, frozen=True):
    text: str  # what the dense retriever and the reranker read: as typed (trimmed), or condensed
    lexical: str  # condensed for BM25
    paths: tuple[str, ...]  # file paths or module paths the text mentions
    symbols: tuple[str, ...] = ()  # code names the text mentions: the symbol retriever looks up their definitions
    condensed: bool = False  # text is shorter than what was typed (see condense_text)
    chars: int = 0  # length of the query as typed (trimmed); 0 when unknown: len(text) stands in

    @property
    def is_report(self) -> bool:
        """A pasted issue or bug report rather than a question: the answer is code to change."""
        return max(self.chars, len(self.text)) >= LONG_QUERY_CHARS


def _is_compound(token: str) -> bool:
    """snake_case or camelCase/CamelCase (string comparisons, not a loop per character: logs are long)."""
    return "_" in token.strip("_") or (token[1:].lower() != token[1:] and token.upper() != token)


def mentioned_paths(text: str, limit: int = 20) -> tuple[str, ...]:
    """Repo-relative path fragments named in the text: files, traceback frames, dotted module names."""
    found: list[str] = []
    for m in _TRACE_FILE.finditer(text):
        found.append(m.group(1))
    found.extend(m.group(1) for m in _PATH.finditer(text))
    for m in _DOTTED.finditer(text):
        parts = m.group(0).split(".")
        if len(parts) >= 3 and all(p.islower() or "_" in p for p in parts[:-1]):
            found.append("/".join(parts[:-1]) + ".py")  # pkg.module.attr -> pkg/module.py
    cleaned: dict[str, None] = {}  # ordered set: a long log names thousands of paths
    for p in found:
        p = p.replace("\\", "/")
        if "site-packages/" in p:
            p = p.split("site-packages/", 1)[1]
        p = p.lstrip("./")
        if p:
            cleaned[p] = None
            if len(cleaned) >= limit:
                break
    return tuple(cleaned)


_FRAME_FUNCTION = re.compile(r'File "[^"]+", line \d+, in ([A-Za-z_]\w*)')
_CALL = re.compile(r"\b([A-Za-z_]\w*)\(")
_TICKED = re.compile(r"`([A-Za-z_][\w.]*)(?:\(\))?`")


def mentioned_symbols(text: str, limit: int = 12) -> tuple[str, ...]:
    """Names the text uses the way code does, in order of first mention: traceback frames' functions,
    `quoted` names, calls ``name(``, dotted ``obj.attr`` (its last two parts), snake_case and CamelCase
    words. Plain words are left out: "the config file" names no definition."""
    found: list[str] = [m.group(1) for m in _FRAME_FUNCTION.finditer(text)]
    head = text[:LONG_QUERY_CHARS * 10]  # a long log names thousands: its start holds the report
    for m in _TICKED.finditer(head):
        found.extend(m.group(1).split(".")[-2:])
    found.extend(m.group(1) for m in _CALL.finditer(head) if _is_compound(m.group(1)) or len(m.group(1)) > 3)
    for m in _DOTTED.finditer(_URL.sub(" ", head)):
        found.extend(p for p in m.group(0).split(".")[-2:] if _is_compound(p) or p[:1].isupper())
    found.extend(t for t in _IDENT.findall(head) if _is_compound(t))
    symbols: dict[str, None] = {}
    for name in found:
        if name.lower() not in _STOP and len(name) >= 3 and name not in ("self", "cls", "<module>"):
            symbols[name] = None
            if len(symbols) >= limit:
                break
    return tuple(symbols)


def _is_exception_line(line: str) -> bool:
    """``ValueError: ...``, ``pkg.errors.ImproperlyConfigured: ...``, ``error: ...``, ``panic: ...``."""
    head = line[:_SCAN]
    if _EXC_WORDS.match(head):
        return True
    m = _EXC_NAME.match(head)
    if not m:
        return False
    name = m.group(2)
    if name.endswith(_EXC_SUFFIX):
        return True
    # a dotted CamelCase name: pkg.errors.ImproperlyConfigured (a bare "PseudoNetCDF: None" is not)
    return bool(m.group(1)) and name[0].isupper() and _is_compound(name)


def _is_frame_line(line: str) -> bool:
    """A stack frame: Python's ``File "x.py", line 3``, IPython's ``File ~/x.py:3``, ``at f (x.js:3:7)``."""
    if not line.startswith(("File ", "at ")):
        return False
    return _LINE_NUMBER.search(line, 0, _SCAN) is not None or (line.startswith("File ") and ", line " in line[:_SCAN])


def _identifier_count(line: str) -> int:
    """Distinct dotted or compound identifiers in the line (URLs and ``key: value`` dumps count none)."""
    if _KEY_VALUE.match(line, 0, _SCAN):
        return 0
    head = _URL.sub(" ", line[:_SCAN])
    return len({m.group(0) for m in _DOTTED.finditer(head)} | {t for t in _IDENT.findall(head) if _is_compound(t)})


def _opening(text: str, size: int) -> str:
    """The first ``size`` characters, ending at a line break (or a space) when one is near."""
    if len(text) <= size:
        return text
    head = text[:size]
    for sep in ("\n", " "):
        cut = head.rfind(sep)
        if cut >= size // 2:
            return head[:cut].rstrip()
    return head


def condense_text(text: str, limit: int = CONDENSED_CHARS) -> str:
    """At most ``limit`` characters for the dense retriever and the reranker; ``text`` when it fits.

    The opening (title and first paragraph state the problem) comes first, then distinct lines by
    priority: exception lines, the first and last ``_EDGE_FRAMES`` traceback frames (the call into
    the library, the raise), then other lines by how many code identifiers they hold. Chosen lines
    keep their order in the text.
    """
    if len(text) <= limit:
        return text
    head = _opening(text, min(_HEAD_CHARS, limit))
    start = text.count("\n", 0, len(head)) + 1  # first line that starts after the opening
    seen = {ln.strip()[:_LINE_CHARS] for ln in head.split("\n")}
    lines: list[tuple[int, str]] = []
    for n, raw in enumerate(text.split("\n")[start:], start):
        line = raw.strip()[:_LINE_CHARS]
        if line and line not in seen:
            seen.add(line)
            lines.append((n, line))
    exceptions = [x for x in lines if _is_exception_line(x[1])]
    frames = [x for x in lines if _is_frame_line(x[1])]
    edges = frames if len(frames) <= 2 * _EDGE_FRAMES else frames[:_EDGE_FRAMES] + frames[-_EDGE_FRAMES:]
    scored = [(c, x) for x in lines if (c := _identifier_count(x[1])) > 0 and not _is_frame_line(x[1])]
    by_identifiers = [x for _, x in sorted(scored, key=lambda cx: -cx[0])]  # stable: text order on ties
    budget = limit - len(head)
    chosen: dict[int, str] = {}
    for n, line in exceptions + edges + by_identifiers:
        if n not in chosen and len(line) + 1 <= budget:
            chosen[n] = line
            budget -= len(line) + 1
        if budget < 2:
            break
    return "\n".join([head, *(chosen[n] for n in sorted(chosen))])


_PARTS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")


def query_terms(text: str) -> frozenset[str]:
    """The informative words of ``text``, identifiers split into their parts (``publish_version`` ->
    publish, version; ``IndexWriter`` -> index, writer), lowercased and cut to 6 characters so that
    "published" meets "publish"."""
    terms = set()
    for token in _IDENT.findall(text):
        for part in {token, *_PARTS.findall(token)}:
            key = part.lower()
            if len(key) >= 3 and key not in _STOP:
                terms.add(key[:6])
    return frozenset(terms)


def prepare_query(query: str, max_terms: int = 160) -> PreparedQuery:
    """What each retriever reads; ``query`` is at most :data:`MAX_QUERY_CHARS` (callers validate)."""
    text = query.strip()
    paths, symbols = mentioned_paths(text), mentioned_symbols(text)
    if len(text) < LONG_QUERY_CHARS:
        return PreparedQuery(text=text, lexical=text, paths=paths, symbols=symbols, chars=len(text))
    code = " ".join(m.group(0) for m in _FENCE.finditer(text))
    prose = _FENCE.sub(" ", text)
    priority: list[str] = []
    for p in paths:
        priority.extend(re.split(r"[/.]", p))
    priority.extend(m.group(0) for m in _DOTTED.finditer(text))
    priority.extend(t for t in _IDENT.findall(text) if _is_compound(t))
    rest = _WORD.findall(prose) + _WORD.findall(code)
    terms: list[str] = []
    seen: set[str] = set()
    for term in priority + rest:
        key = term.lower()
        if key in seen or key in _STOP or not 2 <= len(key) <= _MAX_TERM_CHARS:
            continue
        seen.add(key)
        terms.append(term)
        if len(terms) >= max_terms:
            break
    dense = condense_text(text)
    return PreparedQuery(text=dense, lexical=" ".join(terms), paths=paths, symbols=symbols, condensed=dense != text, chars=len(text))


# ".github" holds issue templates, which echo a report's wording; vendored copies are fixed upstream
_AUX_DIRS = frozenset({"test", "tests", "testing", "doc", "docs", "example", "examples", "benchmarks", "asv_bench", "ci",
                       ".github", "vendor", "_vendor", "vendored", "third_party"})
_AUX_FILE = re.compile(r"(^test_.*|.*_test\.\w+|.*\.(spec|test)\.[jt]sx?|conftest\.py|changes.*|changelog.*|history.*|whats-new.*)$", re.I)
_DOC_SUFFIX = (".md", ".rst", ".txt", ".adoc")


def is_auxiliary_path(uri: str) -> bool:
    """Tests, docs, examples, changelogs, CI and issue templates, vendored code: rarely where a reported
    bug gets fixed."""
    parts = uri.lower().split("/")
    return bool(_AUX_DIRS.intersection(parts[:-1])) or bool(_AUX_FILE.match(parts[-1])) or parts[-1].endswith(_DOC_SUFFIX)
