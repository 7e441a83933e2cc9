"""`get_or_404` and the Session (workspace, clock, Timestamped stamping) on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session as OrmSession

from overture.clock import FrozenClock
from overture.db.context import AppContext
from overture.db.lookup import get_or_404
from overture.db.session import Session, now_of
from overture.delivery.models import Destination
from overture.errors import NotFound
from tests.conftest import WorkspaceFixture


def _destination(ctx: AppContext, workspace_id: str, type_: str = "log") -> str:
    with ctx.transaction(workspace_id=workspace_id) as session:
        row = Destination(name=f"d-{uuid.uuid4().hex[:8]}", type=type_, config={})
        session.add(row)
        session.flush()
        assert row.workspace_id == workspace_id  # stamped from the bound session
        return row.id


# -- get_or_404 ------------------------------------------------------------------------------------


def test_get_or_404__own_row__found(ctx: AppContext, workspace: WorkspaceFixture) -> None:
    dest_id = _destination(ctx, workspace.id)
    with ctx.transaction(write=False, workspace_id=workspace.id) as session:
        row = get_or_404(session, Destination, dest_id)
        assert isinstance(row, Destination) and row.id == dest_id and row.workspace_id == workspace.id
        assert get_or_404(session, Destination, dest_id, lock=True) is row


@pytest.mark.parametrize("missing", ["no-such-id", str(uuid.uuid4()), "", None])
def test_get_or_404__missing_id__404_naming_the_thing(
    ctx: AppContext, workspace: WorkspaceFixture, missing: str | None
) -> None:
    with ctx.transaction(write=False, workspace_id=workspace.id) as session, pytest.raises(NotFound) as exc:
        get_or_404(session, Destination, missing)
    assert exc.value.status_code == 404
    assert exc.value.message == "destination not found"  # from the table name
    assert exc.value.field is None


def test_get_or_404__what_and_field__in_the_error(ctx: AppContext, workspace: WorkspaceFixture) -> None:
    with ctx.transaction(write=False, workspace_id=workspace.id) as session, pytest.raises(NotFound) as exc:
        get_or_404(session, Destination, "nope", what="sync target", field="destination_id")
    assert exc.value.message == "sync target not found"
    assert exc.value.to_dict() == {
        "detail": "sync target not found",
        "code": "not_found",
        "field": "destination_id",
    }


def test_get_or_404__another_workspaces_row__404_like_a_missing_one(
    ctx: AppContext, workspace: WorkspaceFixture, other_workspace: WorkspaceFixture
) -> None:
    theirs = _destination(ctx, other_workspace.id)
    with ctx.transaction(write=False, workspace_id=workspace.id) as session:
        with pytest.raises(NotFound) as exc:
            get_or_404(session, Destination, theirs)
        assert exc.value.message == "destination not found"
    # The row exists: its own workspace sees it, and so does a runtime session bound to none.
    with ctx.transaction(write=False, workspace_id=other_workspace.id) as session:
        assert get_or_404(session, Destination, theirs).workspace_id == other_workspace.id
    with ctx.transaction(write=False) as session:
        assert session.bound_workspace is None
        assert get_or_404(session, Destination, theirs).workspace_id == other_workspace.id


def test_get_or_404__where_mismatch__404(ctx: AppContext, workspace: WorkspaceFixture) -> None:
    dest_id = _destination(ctx, workspace.id, type_="webhook")
    with ctx.transaction(workspace_id=workspace.id) as session:
        assert get_or_404(session, Destination, dest_id, type="webhook", deleted_at=None).id == dest_id
        with pytest.raises(NotFound):
            get_or_404(session, Destination, dest_id, type="smtp")
        with pytest.raises(NotFound):
            get_or_404(session, Destination, dest_id, type="webhook", enabled=False)
        # Soft-deleted: the usual `deleted_at=None` condition hides it.
        get_or_404(session, Destination, dest_id).deleted_at = datetime(2026, 1, 1, tzinfo=UTC)
        session.flush()
        with pytest.raises(NotFound):
            get_or_404(session, Destination, dest_id, deleted_at=None)
        assert get_or_404(session, Destination, dest_id).id == dest_id


# -- the session: workspace, context, clock --------------------------------------------------------


def test_session__workspace_and_ctx(ctx: AppContext, workspace: WorkspaceFixture) -> None:
    with ctx.transaction(write=False, workspace_id=workspace.id) as session:
        assert isinstance(session, Session)
        assert session.workspace_id == workspace.id == session.bound_workspace
        assert session.ctx is ctx
    with ctx.transaction(write=False) as session:
        assert session.bound_workspace is None
        with pytest.raises(RuntimeError, match="not bound to a workspace"):
            _ = session.workspace_id
    # Two sessions never share one info dict (binding one must not bind the other).
    with ctx.transaction(write=False, workspace_id=workspace.id) as a, ctx.transaction(write=False) as b:
        assert a.info is not b.info and b.bound_workspace is None


def test_session__now_follows_the_frozen_clock(ctx: AppContext, frozen_clock: FrozenClock) -> None:
    start = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
    frozen_clock.set(start)
    with ctx.transaction(write=False) as session:
        assert session.now() == start
        assert now_of(session) == start
        frozen_clock.advance(minutes=5)
        assert session.now() == start + timedelta(minutes=5)


def test_session__outside_a_context__system_clock(ctx: AppContext, frozen_clock: FrozenClock) -> None:
    frozen_clock.set(datetime(2001, 1, 1, tzinfo=UTC))
    before = datetime.now(UTC)
    bare = Session(ctx.engine)
    plain = OrmSession(ctx.engine)
    try:
        with pytest.raises(RuntimeError, match="not made by an AppContext"):
            _ = bare.ctx
        for now in (bare.now(), now_of(plain)):
            assert now.tzinfo is not None and before <= now <= datetime.now(UTC)
    finally:
        bare.close()
        plain.close()


# -- Timestamped stamping from the session clock ---------------------------------------------------


def test_timestamped__insert_and_update__stamped_from_the_session_clock(
    ctx: AppContext, workspace: WorkspaceFixture, frozen_clock: FrozenClock
) -> None:
    created = datetime(2031, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
    frozen_clock.set(created)
    dest_id = _destination(ctx, workspace.id)
    with ctx.transaction(write=False, workspace_id=workspace.id) as session:
        row = get_or_404(session, Destination, dest_id)
        assert (row.created_at, row.updated_at) == (created, created)

    changed = frozen_clock.advance(hours=2)
    with ctx.transaction(workspace_id=workspace.id) as session:
        row = get_or_404(session, Destination, dest_id)
        row.enabled = False
    with ctx.transaction(write=False, workspace_id=workspace.id) as session:
        row = get_or_404(session, Destination, dest_id)
        assert (row.created_at, row.updated_at) == (created, changed)

    # A flush with no real change (same value assigned) does not touch updated_at.
    frozen_clock.advance(hours=1)
    with ctx.transaction(workspace_id=workspace.id) as session:
        row = get_or_404(session, Destination, dest_id)
        row.enabled = False
    with ctx.transaction(write=False, workspace_id=workspace.id) as session:
        assert get_or_404(session, Destination, dest_id).updated_at == changed


def test_timestamped__explicit_created_at__kept(
    ctx: AppContext, workspace: WorkspaceFixture, frozen_clock: FrozenClock
) -> None:
    earlier = datetime(2020, 1, 1, tzinfo=UTC)
    with ctx.transaction(workspace_id=workspace.id) as session:
        row = Destination(name="imported", type="log", config={}, created_at=earlier)
        session.add(row)
        session.flush()
        dest_id = row.id
    with ctx.transaction(write=False, workspace_id=workspace.id) as session:
        row = get_or_404(session, Destination, dest_id)
        assert (row.created_at, row.updated_at) == (earlier, frozen_clock.now())


def test_timestamped__core_read_of_the_column__the_same_instant(
    ctx: AppContext, workspace: WorkspaceFixture, frozen_clock: FrozenClock
) -> None:
    dest_id = _destination(ctx, workspace.id)
    with ctx.engine.connect() as conn:
        stored = conn.execute(
            sa.select(Destination.__table__.c.created_at).where(Destination.__table__.c.id == dest_id)
        ).scalar_one()
    assert stored == frozen_clock.now()
