"""HTTP: the workspace and its API keys (admin scope)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from overture.auth import service
from overture.auth.deps import DbSession, check_workspace_path, require
from overture.auth.schemas import KeyCreate, KeyCreated, KeyRead, WorkspaceRead, WorkspaceUpdate
from overture.auth.service import Caller

router = APIRouter(
    prefix="/api/v1/workspaces/{id}", tags=["workspaces"], dependencies=[Depends(check_workspace_path)]
)
Admin = Annotated[Caller, Depends(require("admin"))]


@router.get("", response_model=WorkspaceRead)
def get_workspace(id: str, caller: Admin, db: DbSession) -> object:
    return service.get_workspace(db, caller.workspace_id)


@router.patch("", response_model=WorkspaceRead)
def update_workspace(id: str, body: WorkspaceUpdate, caller: Admin, db: DbSession) -> object:
    return service.update_workspace(db, caller.workspace_id, body)


@router.post("/keys", status_code=201, response_model=KeyCreated)
def create_key(id: str, body: KeyCreate, caller: Admin, db: DbSession) -> object:
    key, secret = service.create_key(
        db, caller.workspace_id, name=body.name, scopes=body.scopes, public=body.public
    )
    return KeyCreated.model_validate({**KeyRead.model_validate(key).model_dump(), "secret": secret})


@router.get("/keys", response_model=list[KeyRead])
def list_keys(id: str, caller: Admin, db: DbSession) -> object:
    return service.list_keys(db)


@router.delete("/keys/{key_id}", status_code=204)
def revoke_key(id: str, key_id: str, caller: Admin, db: DbSession) -> None:
    service.revoke_key(db, key_id)
