"""The registry of global configs. A module that reads a config defines it next to its use."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chalicelib.errors import InvalidArgument


@dataclass(frozen=True)
class ConfigDefinition:
    category: str
    name: str
    type: type  # int, float, bool or str
    default: Any
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None

    @property
    def key(self) -> str:
        return f"{self.category}.{self.name}"

    def parse(self, text: str) -> Any:
        """The typed value of ``text``, or InvalidArgument saying what is allowed."""
        try:
            if self.type is bool:
                if text.lower() not in ("true", "false"):
                    raise ValueError
                value: Any = text.lower() == "true"
            else:
                value = self.type(text)
        except ValueError:
            raise InvalidArgument(
                f"{self.key} must be a {self.type.__name__}, got {text!r}",
                details={"field": "value", "config": self.key},
            ) from None
        if self.min is not None and value < self.min:
            raise self._range_error(text)
        if self.max is not None and value > self.max:
            raise self._range_error(text)
        if self.choices is not None and value not in self.choices:
            raise InvalidArgument(
                f"{self.key} must be one of {', '.join(self.choices)}, got {text!r}",
                details={"field": "value", "config": self.key, "choices": list(self.choices)},
            )
        return value

    def _range_error(self, text: str) -> InvalidArgument:
        low = "-inf" if self.min is None else self.min
        high = "inf" if self.max is None else self.max
        bounds = f"[{low}, {high}]"
        return InvalidArgument(
            f"{self.key} must be within {bounds}, got {text}",
            details={"field": "value", "config": self.key, "min": self.min, "max": self.max},
        )

    def render(self, value: Any) -> str:
        return str(value).lower() if self.type is bool else str(value)


_DEFINITIONS: dict[tuple[str, str], ConfigDefinition] = {}


def define(definition: ConfigDefinition) -> ConfigDefinition:
    _DEFINITIONS[(definition.category, definition.name)] = definition
    return definition


def definitions() -> list[ConfigDefinition]:
    return list(_DEFINITIONS.values())


def lookup(category: str, name: str) -> ConfigDefinition | None:
    return _DEFINITIONS.get((category, name))
