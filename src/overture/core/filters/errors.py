"""The one error the filter language raises: a ValueError that names where in the input it went wrong."""

from __future__ import annotations


class FilterError(ValueError):
    """Bad filter input. `path` points into the caller's document (``filters[2].operator``) so an API
    can answer 422 with the exact field; ``str(e)`` is ``"{path}: {message}"``."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message

    def __reduce__(self) -> tuple[type[FilterError], tuple[str, str]]:
        # Survives pickling (worker processes), which replays __init__ with these arguments.
        return (type(self), (self.path, self.message))
