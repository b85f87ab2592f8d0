"""'Did you mean ...?' for unknown fields of a strict model (controller/models.py).

A misspelt field (``pathtype``, ``backendservice``, ``requestsPerMinut``) is the
most common first mistake in a manifest, and "unknown field" alone leaves the
user to find the right spelling in the reference. Given the model a document
was validated against and the error's location, this finds the model that the
unknown key sits in and offers the closest of its field names (as written in
YAML: the camelCase aliases), with difflib.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Sequence

from pydantic import BaseModel


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold: through Optional, unions, lists, dicts, Annotated."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is None:
        return []
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        args = args[:1]
    elif origin is dict:
        args = args[1:]
    elif not (origin in (list, tuple, set, frozenset, typing.Union) or origin is types.UnionType):
        return []
    return [m for a in args for m in _models_in(a)]


def _field_names(model: type[BaseModel]) -> dict[str, Any]:
    """Field name as written in a manifest (its alias) -> annotation."""
    return {(f.alias or name): f.annotation for name, f in model.model_fields.items()}


def models_at(root: type[BaseModel], path: Sequence[str | int]) -> list[type[BaseModel]]:
    """The models that may hold the mapping at ``path`` (list indexes and union tags are skipped)."""
    current = [root]
    for part in path:
        if isinstance(part, int):
            continue  # a list index: the same models
        below = [m for model in current for m in _models_in(_field_names(model).get(part))]
        if below:
            current = below
        elif not any(part == m.__name__ for m in current):  # not a union member's tag either
            return []
    return current


def suggestion(root: type[BaseModel] | None, loc: Sequence[str | int]) -> str | None:
    """The known field closest to the unknown one at ``loc`` (its last part), or None."""
    if root is None or not loc or not isinstance(loc[-1], str):
        return None
    known = sorted({name for model in models_at(root, loc[:-1]) for name in _field_names(model)})
    unknown = loc[-1]
    # Case slips (pathtype, backendservice) are the usual mistake; difflib's ratio
    # counts them as different letters, so compare case-folded first.
    folded = {name.lower(): name for name in known}
    if unknown.lower() in folded:
        return folded[unknown.lower()]
    close = difflib.get_close_matches(unknown, known, n=1, cutoff=0.6)
    return close[0] if close else None
