"""File extension -> language name, and which languages get AST chunking."""

from __future__ import annotations

from pathlib import PurePosixPath

__all__ = ["language_for", "AST_LANGUAGES", "KNOWN_LANGUAGES", "BINARY_EXTENSIONS", "DATA_EXTENSIONS", "unindexable_kind"]

_BY_EXTENSION: dict[str, str] = {
    ".py": "python", ".pyi": "python",
    ".js": "javascript", ".jsx": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript", ".tsx": "tsx",
    ".go": "go", ".rs": "rust", ".java": "java",
    ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".hxx": "cpp", ".ipp": "cpp",
    ".cs": "csharp", ".kt": "kotlin", ".kts": "kotlin", ".scala": "scala", ".swift": "swift",
    ".rb": "ruby", ".php": "php", ".lua": "lua", ".pl": "perl", ".r": "r", ".jl": "julia",
    ".sh": "shell", ".bash": "shell", ".zsh": "shell", ".ps1": "powershell",
    ".sql": "sql", ".html": "html", ".htm": "html", ".css": "css", ".scss": "css", ".vue": "vue",
    ".md": "markdown", ".markdown": "markdown", ".rst": "rst", ".txt": "text", ".adoc": "asciidoc",
    ".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".json": "json", ".ini": "ini", ".cfg": "ini",
    ".xml": "xml", ".proto": "protobuf", ".graphql": "graphql", ".tf": "hcl",
    ".pyx": "cython", ".pxd": "cython",
}
_BY_NAME: dict[str, str] = {
    "Makefile": "make", "makefile": "make", "GNUmakefile": "make", "Dockerfile": "dockerfile",
    "CMakeLists.txt": "cmake", "LICENSE": "text", "README": "text", "AUTHORS": "text",
    "CHANGES": "text", "CHANGELOG": "text", "MANIFEST.in": "text", ".gitignore": "text",
}

# Languages chunked along their syntax tree (tree-sitter grammar names).
AST_LANGUAGES: frozenset[str] = frozenset({"python", "javascript", "typescript", "tsx", "go", "rust", "java", "c", "cpp"})

KNOWN_LANGUAGES: frozenset[str] = frozenset(_BY_EXTENSION.values()) | frozenset(_BY_NAME.values())

BINARY_EXTENSIONS: frozenset[str] = frozenset(
    ".png .jpg .jpeg .gif .bmp .ico .webp .tif .tiff .pdf .zip .gz .tgz .bz2 .xz .7z .rar .jar .war "
    ".class .so .dll .dylib .exe .o .a .lib .obj .bin .dat .pkl .pickle .npy .npz .h5 .hdf5 .nc .parquet "
    ".feather .arrow .db .sqlite .sqlite3 .duckdb .woff .woff2 .ttf .otf .eot .mp3 .mp4 .wav .ogg .avi "
    ".mov .pyc .pyo .whl .egg .faiss .onnx .safetensors .pt .pth .ckpt".split()
)

# Text, but data rather than source: indexing it drowns code in noise.
DATA_EXTENSIONS: frozenset[str] = frozenset(".csv .tsv .svg .ipynb .log .pem .crt .key .lst".split())


def language_for(uri: str) -> str | None:
    """Language of a repo-relative path, or None when the file is not a known text kind."""
    path = PurePosixPath(uri)
    return _BY_NAME.get(path.name) or _BY_EXTENSION.get(path.suffix.lower())


def unindexable_kind(uri: str) -> str | None:
    """'binary' or 'data' when the extension alone rules the file out."""
    suffix = PurePosixPath(uri).suffix.lower()
    if suffix in BINARY_EXTENSIONS:
        return "binary"
    if suffix in DATA_EXTENSIONS:
        return "data"
    return None
