from __future__ import annotations

import textwrap

import pytest

from codeintel.config import ChunkSettings
from codeintel.indexing.chunking import chunk_file


def lines_of(text: str) -> list[str]:
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def assert_exact_spans(text: str, chunks) -> None:
    lines = lines_of(text)
    for c in chunks:
        assert 1 <= c.start_line <= c.end_line <= len(lines)
        assert c.text == "\n".join(lines[c.start_line - 1 : c.end_line])


SOURCES = {
    "python": ("m.py", '''
        import os


        class Store:
            """A store."""

            def get(self, key):
                return self.data[key]

            def put(self, key, value):
                self.data[key] = value


        @decorator
        def helper(x):
            return x + 1
        '''),
    "javascript": ("m.js", '''
        import x from "y";

        export function add(a, b) {
          return a + b;
        }

        class Counter {
          increment() { this.n += 1; }
        }

        const double = (n) => n * 2;
        '''),
    "typescript": ("m.ts", '''
        interface Shape { area(): number }

        export class Circle implements Shape {
          constructor(private r: number) {}
          area(): number { return Math.PI * this.r ** 2; }
        }

        type Id = string;
        '''),
    "go": ("m.go", '''
        package main

        import "fmt"

        type Server struct { port int }

        func (s *Server) Start() error {
            fmt.Println(s.port)
            return nil
        }

        func main() { (&Server{8080}).Start() }
        '''),
    "rust": ("m.rs", '''
        use std::fmt;

        pub struct Point { x: i32, y: i32 }

        impl Point {
            pub fn new(x: i32, y: i32) -> Self { Point { x, y } }
        }

        fn main() { let _p = Point::new(1, 2); }
        '''),
    "java": ("M.java", '''
        package demo;

        public class Greeter {
            private final String name;

            public Greeter(String name) { this.name = name; }

            public String greet() { return "hi " + name; }
        }
        '''),
    "c": ("m.c", '''
        #include <stdio.h>

        struct point { int x; int y; };

        static int add(int a, int b) {
            return a + b;
        }

        int main(void) { printf("%d", add(1, 2)); return 0; }
        '''),
    "cpp": ("m.cpp", '''
        #include <string>

        namespace demo {
        class Widget {
         public:
          int size() const { return n_; }
         private:
          int n_ = 0;
        };
        }  // namespace demo

        int main() { return demo::Widget().size(); }
        '''),
}


@pytest.mark.parametrize("lang", sorted(SOURCES))
def test_ast_chunks_tile_file_exactly(lang):
    name, source = SOURCES[lang]
    text = textwrap.dedent(source).lstrip("\n")
    chunks = chunk_file("r", name, text, lang, ChunkSettings())
    assert chunks
    assert_exact_spans(text, chunks)
    # chunks tile the file: contiguous, covering every line
    assert chunks[0].start_line == 1
    assert chunks[-1].end_line == len(lines_of(text))
    for a, b in zip(chunks, chunks[1:]):
        assert b.start_line == a.end_line + 1


def test_small_definitions_merge_and_name_symbols():
    name, source = SOURCES["python"]
    text = textwrap.dedent(source).lstrip("\n")
    chunks = chunk_file("r", name, text, "python", ChunkSettings())
    assert len(chunks) == 1  # the whole small file is one unit
    assert "Store" in chunks[0].symbol and "helper" in chunks[0].symbol


def big_class(methods: int = 12, body_lines: int = 12) -> str:
    parts = ["import os", "", "", "class Repository(Base):", '    """Stores things."""', ""]
    for m in range(methods):
        parts.append(f"    def method_{m}(self, value):")
        parts.extend(f"        value = value + {i}  # step {i} of method {m} doing some work" for i in range(body_lines))
        parts.append("        return value")
        parts.append("")
    return "\n".join(parts) + "\n"


def test_large_class_split_into_methods_with_header_context():
    text = big_class()
    settings = ChunkSettings(max_chars=1500, merge_under_chars=900)
    chunks = chunk_file("r", "repo.py", text, "python", settings)
    assert len(chunks) > 3
    assert_exact_spans(text, chunks)
    method_chunks = [c for c in chunks if "Repository.method_" in c.symbol]
    assert method_chunks
    assert all("class Repository(Base):" in c.context for c in method_chunks if "class Repository" not in c.text)
    assert all(len(c.text) <= settings.max_chars for c in chunks)


def test_long_function_split_into_statement_runs():
    body = "\n".join(f"    total += compute_{i}(value)  # a long line of work number {i}" for i in range(200))
    text = f"def huge(value):\n    total = 0\n{body}\n    return total\n"
    chunks = chunk_file("r", "h.py", text, "python", ChunkSettings(max_chars=2000))
    assert len(chunks) > 3
    assert_exact_spans(text, chunks)
    assert all(c.symbol == "huge" for c in chunks)


def test_window_fallback_overlaps_for_text_files():
    text = "\n".join(f"line {i} of the document" for i in range(1, 151)) + "\n"
    settings = ChunkSettings(window_lines=60, window_overlap=10)
    chunks = chunk_file("r", "notes.md", text, "markdown", settings)
    assert [(c.start_line, c.end_line) for c in chunks] == [(1, 60), (51, 110), (101, 150)]
    assert_exact_spans(text, chunks)


def test_ids_are_stable_and_change_with_content():
    text = big_class(4)
    a = chunk_file("r", "repo.py", text, "python", ChunkSettings(max_chars=1200))
    b = chunk_file("r", "repo.py", text, "python", ChunkSettings(max_chars=1200))
    assert [c.id for c in a] == [c.id for c in b]
    assert all(0 <= c.id < 2**63 for c in a)
    changed = chunk_file("r", "repo.py", text.replace("step 3 of method 3", "STEP"), "python", ChunkSettings(max_chars=1200))
    assert [c.id for c in changed][:-1] == [c.id for c in a][:-1]
    assert changed[-1].id != a[-1].id
    other_repo = chunk_file("r2", "repo.py", text, "python", ChunkSettings(max_chars=1200))
    assert {c.id for c in other_repo}.isdisjoint({c.id for c in a})


def test_crlf_and_missing_final_newline_and_invalid_utf8():
    text = "def a():\r\n    return 1\r\n\r\ndef b():\r\n    return 2"
    chunks = chunk_file("r", "x.py", text, "python", ChunkSettings())
    assert_exact_spans(text, chunks)
    assert chunks[-1].end_line == 5
    broken = b"def a():\n    return '\xff\xfe'\n".decode("utf-8", errors="replace")
    assert_exact_spans(broken, chunk_file("r", "y.py", broken, "python", ChunkSettings()))


def test_syntax_errors_still_chunk():
    text = "def broken(:\n    pass\n\nclass Ok:\n    pass\n"
    chunks = chunk_file("r", "b.py", text, "python", ChunkSettings())
    assert_exact_spans(text, chunks)
    assert chunks[0].start_line == 1 and chunks[-1].end_line == 5
