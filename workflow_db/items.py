"""Reading the legacy service's objects without depending on their libraries.

An item is a mapping, a pydantic v2 model (``model_dump``), a pydantic v1
model (``.json()``), a dataclass, a ``SimpleNamespace`` or any object with the
fields as attributes. Nested models, dataclasses and enums inside a value are
read as the JSON they dump to, so a graph's ``nodes`` list of pydantic models
arrives as a list of plain objects with every field kept, in order.
Nothing here imports pydantic: it is recognised by the methods it has.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from enum import Enum
from types import SimpleNamespace
from typing import Any


def fields_of(item: Any, names: Sequence[str]) -> dict[str, Any]:
    """The fields of ``item`` as a dict (``names``: the ones to read from a plain object).

    Models and dataclasses give every field they have; a plain object gives
    the attributes in ``names`` that it has. Datetimes stay datetimes where the
    item holds them (a pydantic model dumps them as ISO-8601 text).
    """
    if type(item) is dict:
        return item
    if isinstance(item, Mapping):
        return dict(item)
    dumped = _dump_model(item)
    if dumped is not None:
        return dumped
    return {name: plain(getattr(item, name)) for name in names if hasattr(item, name)}


def plain(value: Any) -> Any:
    """``value`` with every nested model, dataclass, namespace and enum turned into JSON values."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value.value if isinstance(value, Enum) else value
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, Enum):
        return plain(value.value)
    dumped = _dump_model(value)
    return value if dumped is None else dumped


def _dump_model(item: Any) -> dict[str, Any] | None:
    """The fields of a model-like object as JSON values; None for anything else."""
    model_dump = getattr(item, "model_dump", None)
    if callable(model_dump) and not isinstance(item, type):  # pydantic v2
        return model_dump(mode="json")  # type: ignore[no-any-return]
    if hasattr(item, "__fields__") and callable(getattr(item, "json", None)) and not isinstance(item, type):
        return json.loads(item.json())  # type: ignore[no-any-return]  # pydantic v1
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return {field.name: plain(getattr(item, field.name)) for field in dataclasses.fields(item)}
    if isinstance(item, SimpleNamespace):
        return {key: plain(value) for key, value in vars(item).items()}
    return None
