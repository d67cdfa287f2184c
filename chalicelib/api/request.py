"""Request schemas. They validate every call and are what the OpenAPI document is made of."""
from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from chalicelib.errors import InvalidArgument

Name = Annotated[str, Field(min_length=1, max_length=255, pattern=r"\S",
                            description="A name people read (not only spaces)")]
Description = Annotated[str, Field(max_length=2048)]
Uuid = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$", description="A 32-hex-digit uuid")]
# Secrets are writeOnly (OpenAPI's word): never echoed, and wiped from a job once it ends.
Password = Annotated[str, Field(min_length=1, max_length=1024,
                                json_schema_extra={"writeOnly": True})]
Secret = Annotated[str, Field(max_length=255, json_schema_extra={"writeOnly": True})]
PrivateKey = Annotated[str, Field(min_length=1, max_length=16384, pattern=r"-----BEGIN ",
                                  description="An OpenSSH or PEM private key",
                                  json_schema_extra={"writeOnly": True})]


class ApiRequest(BaseModel):
    """Fields arrive camelCase on the wire (``zoneUuid``) and are snake_case in Python."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=False, strict=True,
        frozen=True,
    )

    def fields(self, *exclude: str) -> dict[str, Any]:
        return self.model_dump(exclude={"system_tags", "user_tags", *exclude})

    @classmethod
    def secret_fields(cls) -> set[str]:
        """Wire names of the fields that hold secrets."""
        return {field.alias or name for name, field in cls.model_fields.items()
                if (field.json_schema_extra or {}).get("writeOnly")}


class CreateRequest(ApiRequest):
    """A request that creates a resource may tag it on the way."""

    system_tags: list[Annotated[str, Field(max_length=2048)]] = Field(default_factory=list)
    user_tags: list[Annotated[str, Field(min_length=1, max_length=2048)]] = Field(
        default_factory=list)


def _field_path(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "body"


_CLEAN_MESSAGE = re.compile(r"^(Value error|Assertion failed), ")


def parse_request(schema: type[ApiRequest], data: dict[str, Any]) -> ApiRequest:
    """The validated request, or InvalidArgument naming every offending field."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False, include_input=False):
            message = _CLEAN_MESSAGE.sub("", error["msg"])
            if error["type"] == "extra_forbidden":
                known = ", ".join(sorted(f.alias or n for n, f in schema.model_fields.items()))
                message = f"unknown field; this operation takes: {known}"
            problems.append({"field": _field_path(error["loc"]), "message": message})
        first = problems[0]
        raise InvalidArgument(
            f"{first['field']}: {first['message']}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
            details={"field": first["field"], "errors": problems},
        ) from None
