"""``--api-key``: when the server has one, every API call must send ``Authorization: Bearer KEY``
(what the ``openai`` client sends for its ``api_key``)."""

from __future__ import annotations

import hmac

from fastapi import Request

from alphagrad.serve.errors import APIError


def require_api_key(request: Request) -> None:
    key = request.app.state.api_key
    if key is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise APIError(401, "no API key: send the header 'Authorization: Bearer KEY'",
                       code="invalid_api_key")
    if not hmac.compare_digest(given.strip().encode(), key.encode()):
        raise APIError(401, "incorrect API key", code="invalid_api_key")
