"""One exception hierarchy for the whole package.

Everything a user can cause derives from :class:`InputError`; the CLI turns it into one line and
exit code 2, the HTTP layer into an RFC 9457 problem (:mod:`codeintel.service.problems` maps each
class to its status). Anything else is a bug and may traceback.
"""

from __future__ import annotations

__all__ = [
    "CodeIntelError",
    "InputError",
    "IndexNotFoundError",
    "VersionGoneError",
    "ReplicaLostError",
    "RetrieversUnavailableError",
    "Problem",
    "IndexFormatError",
    "ContractMismatchError",
    "ScopeError",
    "EmptyRepositoryError",
    "IndexLockedError",
    "ModelUnavailableError",
    "NotIndexedError",
    "ServiceError",
    "StoreError",
    "problem_of",
]


class CodeIntelError(Exception):
    """Base of every error codeintel raises on purpose."""


class InputError(CodeIntelError):
    """The caller asked for something that cannot be done as asked (exit code 2, HTTP 4xx)."""


class IndexNotFoundError(InputError):
    """No published index version exists where one was expected."""


class VersionGoneError(CodeIntelError):
    """A query was pinned to an index version that has since been replaced and pruned.

    An internal retry signal: the search pipeline re-runs once on the current version; only a
    second loss in a row reaches a client (503)."""


class ReplicaLostError(CodeIntelError):
    """The process serving a call died under it. Read calls are idempotent, so the pipeline asks once more."""


class RetrieversUnavailableError(CodeIntelError):
    """Every first-stage retriever failed or timed out: there is nothing to rank (HTTP 503)."""


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


class StoreError(CodeIntelError):
    """The artifact store cannot be reached, lacks what was asked for, or returned corrupt files."""


class Problem(CodeIntelError):
    """An HTTP-level failure with an RFC 9457 problem type, raised by the HTTP adapter itself."""

    def __init__(self, status: int, title: str, detail: str, type_: str = "about:blank", **extra: object) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.type, self.extra = status, title, detail, type_, extra


class ServiceError(CodeIntelError):
    """The codeintel HTTP service answered with a problem, or could not be reached (``status`` None).

    Clients of the HTTP API (the MCP server) raise this one type, carrying the problem's detail.
    """

    def __init__(self, detail: str, status: int | None = None, title: str | None = None) -> None:
        self.detail, self.status, self.title = detail, status, title
        super().__init__(f"{title} ({status}): {detail}" if status is not None else detail)


def problem_of(exc: BaseException) -> tuple[int, str, str]:
    """(HTTP status, title, problem slug) of an error: the one table the HTTP routes, the answer
    stream's error events and the request metrics all read."""
    if isinstance(exc, Problem):
        return exc.status, exc.title, exc.type.rsplit("/", 1)[-1]
    for kind, status, title, slug in _PROBLEMS:
        if isinstance(exc, kind):
            return status, title, slug
    return 500, "Internal error", "internal"


_PROBLEMS: tuple[tuple[type[BaseException], int, str, str], ...] = (
    (RetrieversUnavailableError, 503, "Retrievers unavailable", "retrievers-unavailable"),
    (VersionGoneError, 503, "Service unavailable", "unavailable"),
    (ReplicaLostError, 503, "Service unavailable", "unavailable"),
    (IndexNotFoundError, 503, "No index", "no-index"),
    (ContractMismatchError, 503, "Index unusable", "index-unusable"),
    (IndexFormatError, 503, "Index unusable", "index-unusable"),
    (IndexLockedError, 409, "Index busy", "index-busy"),
    (NotIndexedError, 404, "Not indexed", "not-indexed"),
    (InputError, 400, "Bad request", "bad-request"),
    (ModelUnavailableError, 503, "Model unavailable", "model-unavailable"),
    (StoreError, 503, "Index store unavailable", "store-unavailable"),
)
