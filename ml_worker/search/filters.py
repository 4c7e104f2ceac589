"""Which documents a search may return, as SQL conditions on the table's columns.

Filters are SQL conditions LanceDB applies before ranking, so a filtered search
returns the best matching documents, not a filtered short list. Every value in a
condition is a quoted SQL string literal (``store.sql_string``): a task's arguments
never reach the SQL as code.
"""

from __future__ import annotations

from dataclasses import dataclass

from ml_worker.store import PASSAGE, sql_string

# Rows without text (documents with no content) have no passage to find.
PASSAGES_ONLY = f"{PASSAGE} >= 0"


@dataclass(frozen=True)
class Filters:
    """Which documents a search may return; unset fields do not filter."""

    languages: tuple[str, ...] = ()
    content_types: tuple[str, ...] = ()
    path_prefix: str | None = None
    tags: tuple[str, ...] = ()  # documents with any of these tags

    @classmethod
    def of(
        cls,
        *,
        languages: list[str] | str | None = None,
        content_types: list[str] | str | None = None,
        path_prefix: str | None = None,
        tags: list[str] | str | None = None,
    ) -> Filters:
        """Filters from task arguments (checked by the task): each list may also be
        a single string."""
        return cls(
            languages=_strings(languages),
            content_types=_strings(content_types),
            path_prefix=path_prefix or None,
            tags=_strings(tags),
        )

    def sql(self) -> str | None:
        """The LanceDB (DataFusion SQL) condition of these filters."""
        conditions = []
        if self.languages:
            conditions.append(f"language IN ({sql_list(self.languages)})")
        if self.content_types:
            conditions.append(f"content_type IN ({sql_list(self.content_types)})")
        if self.path_prefix:
            conditions.append(f"starts_with(path, {sql_string(self.path_prefix)})")
        if self.tags:
            conditions.append(f"array_has_any(tags, [{sql_list(self.tags)}])")
        return " AND ".join(conditions) or None


def _strings(value: list[str] | str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def sql_list(values: tuple[str, ...]) -> str:
    """The values as a list of SQL string literals, for ``IN (...)``."""
    return ", ".join(sql_string(v) for v in values)
