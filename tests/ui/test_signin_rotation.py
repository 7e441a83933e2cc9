"""Dashboard sessions are signed with the key ring that encrypts stored secrets: a session made before
`overture secrets rotate` stays valid while the ring holds both keys, and ends when the old key is
retired (issue #15, item 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from overture.config import Settings
from overture.db import migrate
from overture.db.base import Base
from overture.db.context import AppContext
from overture.db.keyring import KEY_FILE, rotate
from overture.errors import Unauthorized
from overture.ui import signin
from tests.conftest import create_workspace


def test_session__valid_during_a_rotation__ends_when_the_old_key_is_retired(tmp_path: Path) -> None:
    ctx = AppContext.from_settings(Settings(home=tmp_path, run_workers=False))
    try:
        migrate.upgrade(ctx.settings.resolved_database_url, ctx.engine)
        ws = create_workspace(ctx)
        cookie = signin.sign_in_with_key(ctx, ws.api_key)
        old = (tmp_path / KEY_FILE).read_text().split()

        def mid_rotation(_seconds: float) -> None:
            # The ring is <new>,<old> here: the old session still resolves, a new one is signed
            # with the new key and resolves too.
            assert (tmp_path / KEY_FILE).read_text().split()[1:] == old
            assert signin.resolve(ctx, cookie).caller.workspace_id == ws.id
            fresh = signin.sign_in_with_key(ctx, ws.api_key)
            assert signin.resolve(ctx, fresh).caller.workspace_id == ws.id

        rotate(ctx.engine, Base.metadata, grace=0, sleep=mid_rotation)

        with pytest.raises(Unauthorized):
            signin.resolve(ctx, cookie)
        assert signin.resolve(ctx, signin.sign_in_with_key(ctx, ws.api_key)).caller.workspace_id == ws.id
    finally:
        ctx.close()
