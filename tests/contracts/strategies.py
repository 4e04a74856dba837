"""Hypothesis strategies that build any contract model from its field annotations."""

from __future__ import annotations

import types
from datetime import UTC, datetime
from enum import Enum
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from hypothesis import strategies as st
from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

TEXT = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=20)
JSON_INT = st.integers(min_value=-(2**53), max_value=2**53)
DATETIMES = st.datetimes(
    min_value=datetime(1970, 1, 2),  # noqa: DTZ001 - bounds of a naive strategy
    max_value=datetime(2200, 1, 1),  # noqa: DTZ001
    timezones=st.sampled_from([None, UTC]),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | JSON_INT | TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=8,
)


def for_annotation(annotation: Any) -> st.SearchStrategy[Any]:
    """A strategy of JSON-representable values of a field annotation."""
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Annotated:
        return for_annotation(args[0])
    if origin is Literal:
        return st.sampled_from(args)
    if origin in (Union, types.UnionType):
        return st.one_of(*(for_annotation(arg) for arg in args))
    if origin is list:
        return st.lists(for_annotation(args[0]), max_size=4)
    if origin is dict or annotation is dict:
        values = for_annotation(args[1]) if args else JSON_VALUES
        return st.dictionaries(TEXT, values, max_size=4)
    if annotation is type(None):
        return st.none()
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return st.sampled_from(list(annotation))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return models(annotation)
    if annotation is Any:
        return JSON_VALUES
    simple: dict[Any, st.SearchStrategy[Any]] = {
        str: TEXT,
        int: JSON_INT,
        float: st.floats(allow_nan=False, allow_infinity=False),
        bool: st.booleans(),
        datetime: DATETIMES,
    }
    return simple[annotation]


def models(model: type[M]) -> st.SearchStrategy[M]:
    """Instances of `model` with every field drawn (optional ones sometimes left to default)."""
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for name, field in model.model_fields.items():
        strategy = for_annotation(field.annotation)
        (required if field.is_required() else optional)[name] = strategy
    return st.fixed_dictionaries(required, optional=optional).map(model.model_validate)
