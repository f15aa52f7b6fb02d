"""GET /v1/health: is the server up, and can it reach its store?"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from deskpulse.errors import DeskPulseError
from deskpulse.server.common import (
    ERRORS,
    RETRY_AFTER_DOC,
    ErrorBody,
    ServerState,
    error_response,
    log,
    state,
)
from deskpulse.store.base import Store

router = APIRouter()


class Health(BaseModel):
    status: str = Field(description='"ok"')
    version: str = Field(description="deskpulse version")
    schema_: int = Field(alias="schema", description="database schema version")


def schema_version(store: Store) -> int:
    return store.schema_version()


@router.get("/v1/health", response_model=Health, summary="Is the server up?",
            description="No authentication, no secrets, no per-device data.",
            responses={503: {"model": ErrorBody, "description": ERRORS[503],
                             "headers": RETRY_AFTER_DOC}})
async def health(server: Annotated[ServerState, Depends(state)]) -> Any:
    try:
        schema = await server.database.run(schema_version)
    except DeskPulseError as exc:
        log.warning("health: database unavailable: %s", exc)
        return error_response(503, ERRORS[503])
    return {"status": "ok", "version": server.version, "schema": schema}
