"""One exception hierarchy for the whole package.

Everything a user can cause derives from :class:`InputError`; the CLI turns it into one line and
exit code 2, the HTTP layer into an RFC 9457 problem. Anything else is a bug and may traceback.
"""

from __future__ import annotations

__all__ = [
    "CodeIntelError",
    "InputError",
    "IndexNotFoundError",
    "VersionGoneError",
    "IndexFormatError",
    "ContractMismatchError",
    "ScopeError",
    "EmptyRepositoryError",
    "IndexLockedError",
    "ModelUnavailableError",
    "NotIndexedError",
    "ServiceError",
]


class CodeIntelError(Exception):
    """Base of every error codeintel raises on purpose."""


class InputError(CodeIntelError):
    """The caller asked for something that cannot be done as asked (exit code 2, HTTP 4xx)."""


class IndexNotFoundError(InputError):
    """No published index version exists where one was expected."""


class VersionGoneError(IndexNotFoundError):
    """A query was pinned to an index version that has since been replaced and pruned (retry on the current one)."""


class IndexFormatError(InputError):
    """The index directory was written by an incompatible codeintel version or is damaged."""


class ContractMismatchError(InputError):
    """The index was built with another embedding contract than the configured embedder's."""

    def __init__(self, field: str, index_value: object, configured_value: object) -> None:
        self.field = field
        self.index_value = index_value
        self.configured_value = configured_value
        super().__init__(
            f"embedding contract mismatch on {field}: index has {index_value!r}, "
            f"configured embedder has {configured_value!r} (rebuild the index or configure the matching model)"
        )


class ScopeError(InputError):
    """A scope filter is malformed: unknown language, bad glob."""


class EmptyRepositoryError(InputError):
    """The path holds no indexable file."""


class IndexLockedError(InputError):
    """Another indexer holds the index directory's lock."""


class ModelUnavailableError(CodeIntelError):
    """A bundled model package is missing or does not match its contract."""


class NotIndexedError(InputError):
    """The path names no file of the published index (HTTP 404): only indexed files are served."""


class ServiceError(CodeIntelError):
    """The codeintel HTTP service answered with a problem, or could not be reached (``status`` None).

    Clients of the HTTP API (the MCP server) raise this one type, carrying the problem's detail.
    """

    def __init__(self, detail: str, status: int | None = None, title: str | None = None) -> None:
        self.detail, self.status, self.title = detail, status, title
        super().__init__(f"{title} ({status}): {detail}" if status is not None else detail)
