"""The HTTP-facing layer: request validation, auth, the async-job envelope, errors, OpenAPI."""
