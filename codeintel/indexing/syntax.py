"""The syntax-tree facts chunking and the code graph share: parsers, and which nodes define what."""

from __future__ import annotations

from functools import lru_cache

__all__ = ["parser_for", "unwrap", "definition_name", "body_of", "DEFINITIONS"]


@lru_cache(maxsize=None)
def parser_for(lang: str):
    from tree_sitter_language_pack import get_parser

    return get_parser(lang)


# Wrappers whose meaning is carried by one inner child (decorators, export, templates).
_WRAPPERS = {"decorated_definition": "definition", "export_statement": "declaration", "template_declaration": None}
_NAME_CHILD_TYPES = {"identifier", "field_identifier", "type_identifier", "property_identifier", "name"}
# Nodes that define a named thing (after unwrapping); everything else is a statement or expression.
DEFINITIONS = {
    "function_definition", "class_definition",  # python, c, cpp
    "function_declaration", "generator_function_declaration", "class_declaration", "method_definition",
    "abstract_class_declaration", "interface_declaration", "type_alias_declaration", "enum_declaration",
    "lexical_declaration", "variable_declaration", "internal_module", "module",  # js/ts
    "method_declaration", "type_declaration",  # go
    "function_item", "impl_item", "struct_item", "enum_item", "trait_item", "mod_item", "macro_definition",
    "union_item", "type_item", "const_item", "static_item",  # rust
    "constructor_declaration", "record_declaration", "annotation_type_declaration",  # java
    "struct_specifier", "class_specifier", "union_specifier", "enum_specifier", "namespace_definition",  # c/cpp
}


def unwrap(node):
    while node.type in _WRAPPERS:
        field_name = _WRAPPERS[node.type]
        inner = node.child_by_field_name(field_name) if field_name else None
        if inner is None:
            inner = next((c for c in reversed(node.named_children) if c.type not in ("decorator", "comment", "template_parameter_list")), None)
        if inner is None:
            break
        node = inner
    return node


def definition_name(node) -> str:
    node = unwrap(node)
    if node.type not in DEFINITIONS:
        return ""
    target = node.child_by_field_name("name")
    if target is None and node.type == "impl_item":
        target = node.child_by_field_name("type")
    if target is None and node.type in ("lexical_declaration", "variable_declaration", "type_declaration"):
        first = node.named_children[0] if node.named_children else None
        if first is not None and first.type in ("variable_declarator", "type_spec", "type_alias"):
            target = first.child_by_field_name("name")
            value = first.child_by_field_name("value")
            if node.type != "type_declaration" and (value is None or value.type not in ("arrow_function", "function", "function_expression", "class")):
                target = None
    if target is None and node.type == "function_definition":
        # C/C++: the name sits inside nested declarators
        decl = node.child_by_field_name("declarator")
        while decl is not None and decl.type not in _NAME_CHILD_TYPES and decl.type not in ("qualified_identifier", "operator_name", "destructor_name"):
            decl = decl.child_by_field_name("declarator")
        target = decl
    if target is None:
        return ""
    return target.text.decode("utf-8", errors="replace")


def body_of(node):
    node = unwrap(node)
    body = node.child_by_field_name("body")
    if body is None and node.type in ("impl_item", "trait_item", "mod_item"):
        body = next((c for c in node.named_children if c.type == "declaration_list"), None)
    if body is not None and body.named_child_count:
        return body
    return None
