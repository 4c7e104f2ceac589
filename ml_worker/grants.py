"""Which projects a task's user may read, from the ``user`` in its args.

Datashare serializes its ``User`` as ``{"id", "name", "email", "provider",
"details"}``, the projects it is granted in ``details.groups_by_applications.
datashare`` (``User.isGranted``). A task given a user runs only on a project that
user is granted, checked before it reads anything.

What this protects: mistakes, and every client that sends the signed-in user, as
Datashare's own interface and ml-worker's plugin do. What it does not: Datashare's
generic task route (``PUT /api/task/{id}``) takes the ``user`` from the request's
body and checks no grant itself, so a client that sends another user, or none, is
not stopped here; that needs Datashare to check grants on that route.
"""

from __future__ import annotations

from typing import Any

from ml_worker.exceptions import ProjectNotGranted

# As the task arguments take it: Datashare's user object; a bare id from clients
# that send one (it carries no grants).
User = dict[str, Any] | str | None


def check_grant(user: User, project: str) -> None:
    """Raise ProjectNotGranted unless ``user`` (when there is one) is granted
    ``project``."""
    if user is None:
        return
    if project not in granted_projects(user):
        raise ProjectNotGranted(
            f'user "{_user_id(user)}" is not granted project "{project}"'
        )


def granted_projects(user: dict[str, Any] | str) -> frozenset[str]:
    """The projects ``user`` is granted; none for a user without details."""
    if not isinstance(user, dict):
        return frozenset()
    details = user.get("details")
    groups = (
        details.get("groups_by_applications") if isinstance(details, dict) else None
    )
    projects = groups.get("datashare") if isinstance(groups, dict) else None
    if not isinstance(projects, list):
        return frozenset()
    return frozenset(p for p in projects if isinstance(p, str))


def _user_id(user: dict[str, Any] | str) -> str:
    return str(user.get("id")) if isinstance(user, dict) else user
