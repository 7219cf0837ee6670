"""The code graph of one file, from its syntax tree: what it defines, calls, imports and inherits.

Definitions get qualified names (``pkg.mod.Class.method`` for Python, ``path/file.go:Type.method``
elsewhere) and line ranges; references are recorded by name with the definition that encloses them
(so callers can be found), calls in every AST language, imports and base classes in Python.
Names are matched, not type-resolved: like LocAgent's graph, it is an index to jump from, cheap to
build per file and so as incremental as the chunks. Imports are resolved to files across the whole
repository by :func:`resolve_imports`, once all files are known.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import PurePosixPath
from typing import Iterable, Sequence

import msgspec
from tree_sitter import Query, QueryCursor

from codeintel.indexing.languages import AST_LANGUAGES
from codeintel.indexing.syntax import DEFINITIONS, body_of, definition_name, parser_for, unwrap

__all__ = ["Definition", "Reference", "extract_graph", "module_of", "resolve_imports"]


class Definition(msgspec.Struct, frozen=True):
    uri: str
    name: str
    qualname: str
    kind: str  # class | function | method | other
    start_line: int  # 1-based, inclusive
    end_line: int
    parent: str  # qualname of the enclosing definition, "" at module level


class Reference(msgspec.Struct, frozen=True):
    uri: str
    name: str  # the name used: a called function, a base class, an imported module or symbol
    kind: str  # call | inherit | import
    line: int
    scope: str  # qualname of the enclosing definition ("" at module level): who calls
    module: str = ""  # import: the absolute module path named (relative imports made absolute)
    target_uri: str = ""  # import: the file that module resolves to, "" when outside the repository


_CLASS_KINDS = {"class_definition", "class_declaration", "abstract_class_declaration", "class_specifier", "struct_item",
                "struct_specifier", "interface_declaration", "trait_item", "impl_item", "enum_declaration", "enum_item",
                "record_declaration", "type_declaration"}

# Where a call's callee name sits, per grammar: the last identifier of the called expression.
_CALLS = {
    "python": "(call function: [(identifier) @name (attribute attribute: (identifier) @name)])",
    "javascript": "(call_expression function: [(identifier) @name (member_expression property: (property_identifier) @name)])",
    "typescript": "(call_expression function: [(identifier) @name (member_expression property: (property_identifier) @name)])",
    "tsx": "(call_expression function: [(identifier) @name (member_expression property: (property_identifier) @name)])",
    "go": "(call_expression function: [(identifier) @name (selector_expression field: (field_identifier) @name)])",
    "rust": "(call_expression function: [(identifier) @name (field_expression field: (field_identifier) @name)"
            " (scoped_identifier name: (identifier) @name)])",
    "java": "(method_invocation name: (identifier) @name)",
    "c": "(call_expression function: [(identifier) @name (field_expression field: (field_identifier) @name)])",
    "cpp": "(call_expression function: [(identifier) @name (field_expression field: (field_identifier) @name)"
           " (qualified_identifier name: (identifier) @name)])",
}


@lru_cache(maxsize=None)
def _query(lang: str) -> Query:
    from tree_sitter_language_pack import get_language

    return Query(get_language(lang), _CALLS[lang])


def module_of(uri: str) -> str:
    """The dotted module a Python file defines (``pkg/mod.py`` -> ``pkg.mod``, ``pkg/__init__.py`` -> ``pkg``,
    ``src/pkg/mod.py`` -> ``pkg.mod``: the src layout)."""
    parts = list(PurePosixPath(uri).with_suffix("").parts)
    if len(parts) > 1 and parts[0] == "src":
        parts.pop(0)
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def extract_graph(uri: str, text: str, lang: str) -> tuple[list[Definition], list[Reference]]:
    """Definitions and references of one file; nothing for languages without a syntax tree here."""
    if lang not in AST_LANGUAGES:
        return [], []
    root = parser_for(lang).parse(text.encode("utf-8")).root_node
    prefix = module_of(uri) if lang == "python" else uri + ":"
    defs: list[Definition] = []
    refs: list[Reference] = []
    _definitions(root, uri, lang, prefix, "", False, defs, refs)
    scopes = sorted(defs, key=lambda d: (d.start_line, -d.end_line))
    for node in QueryCursor(_query(lang)).captures(root).get("name", []):
        line = node.start_point[0] + 1
        refs.append(Reference(uri, _text(node), "call", line, _innermost(scopes, line)))
    if lang == "python":
        refs.extend(_imports(root, uri, scopes))
    refs.sort(key=lambda r: (r.line, r.kind, r.name))
    return defs, refs


def _text(node) -> str:
    return node.text.decode("utf-8", errors="replace")


def _definitions(node, uri, lang, prefix, parent, in_class, defs, refs) -> None:
    for child in node.named_children:
        name = definition_name(child)
        if not name:
            if child.type in ("block", "if_statement", "try_statement", "with_statement", "else_clause", "elif_clause",
                              "except_clause", "finally_clause", "declaration_list", "class_body", "field_declaration_list",
                              "namespace_definition", "export_statement", "decorated_definition", "program", "source_file",
                              "translation_unit", "compound_statement", "preproc_if", "preproc_ifdef"):
                _definitions(child, uri, lang, prefix, parent, in_class, defs, refs)
            continue
        inner = unwrap(child)
        is_class = inner.type in _CLASS_KINDS
        kind = "class" if is_class else ("method" if in_class else ("function" if "function" in inner.type
                                                                   or inner.type.endswith(("_item", "method_declaration")) else "other"))
        if parent:
            qualname = f"{parent}.{name}"
        else:
            qualname = f"{prefix}.{name}" if lang == "python" and prefix else f"{prefix}{name}"
        defs.append(Definition(uri, name, qualname, kind, child.start_point[0] + 1, child.end_point[0] + 1, parent))
        if lang == "python" and inner.type == "class_definition":
            bases = inner.child_by_field_name("superclasses")
            for base in bases.named_children if bases is not None else ():
                target = base if base.type in ("identifier", "attribute") else None
                if target is not None:
                    refs.append(Reference(uri, _text(target).rsplit(".", 1)[-1], "inherit", base.start_point[0] + 1, qualname))
        body = body_of(child)
        if body is not None and inner.type in DEFINITIONS:
            _definitions(body, uri, lang, prefix, qualname, is_class, defs, refs)


def _innermost(scopes: Sequence[Definition], line: int) -> str:
    """The qualname of the smallest definition spanning ``line`` ("" at module level)."""
    best = ""
    for d in scopes:
        if d.start_line > line:
            break
        if d.end_line >= line:
            best = d.qualname  # later starts nest inside earlier ones
    return best


def _imports(root, uri: str, scopes: Sequence[Definition]) -> list[Reference]:
    package = module_of(uri) if uri.endswith("__init__.py") else module_of(uri).rpartition(".")[0]
    out: list[Reference] = []

    def visit(node) -> None:
        for child in node.named_children:
            if child.type == "import_statement":
                for name in child.named_children:
                    dotted = name.child_by_field_name("name") if name.type == "aliased_import" else name
                    module = _text(dotted)
                    out.append(Reference(uri, module.rsplit(".", 1)[-1], "import", child.start_point[0] + 1,
                                         _innermost(scopes, child.start_point[0] + 1), module=module))
            elif child.type == "import_from_statement":
                source = child.child_by_field_name("module_name")
                module = _absolute(_text(source), package) if source is not None else ""
                line = child.start_point[0] + 1
                names = [n for n in child.named_children if n is not source]
                for n in names:
                    dotted = n.child_by_field_name("name") if n.type == "aliased_import" else n
                    if dotted is None or dotted.type not in ("dotted_name", "identifier"):
                        continue  # "import *"
                    symbol = _text(dotted)
                    out.append(Reference(uri, symbol, "import", line, _innermost(scopes, line), module=f"{module}.{symbol}"))
            elif child.named_child_count and child.type not in ("string", "comment", "expression_statement"):
                visit(child)

    visit(root)
    return out


def _absolute(module: str, package: str) -> str:
    """``..pkg.mod`` seen from package ``a.b.c`` is ``a.b.pkg.mod``."""
    dots = len(module) - len(module.lstrip("."))
    if not dots:
        return module
    base = package.split(".") if package else []
    base = base[: len(base) - (dots - 1)] if dots > 1 else base
    rest = module[dots:]
    return ".".join([*base, rest] if rest else base)


def resolve_imports(refs: Iterable[Reference], uris: Iterable[str]) -> list[Reference]:
    """Imports with ``target_uri`` set to the repository file their module names (``a.b.c`` or, for
    ``from a.b import c``, ``a.b``), matched on the path's tail so ``src/`` layouts resolve too."""
    by_tail: dict[str, str] = {}
    for uri in sorted(uris, key=lambda u: (len(u), u)):  # shortest path wins a tie
        if uri.endswith((".py", ".pyi")):
            module = module_of(uri)
            parts = module.split(".")
            for i in range(len(parts)):
                by_tail.setdefault(".".join(parts[i:]), uri)
    out = []
    for r in refs:
        if r.kind == "import" and r.module:
            target = by_tail.get(r.module) or by_tail.get(r.module.rpartition(".")[0], "")
            r = msgspec.structs.replace(r, target_uri=target if target != r.uri else "")
        out.append(r)
    return out
