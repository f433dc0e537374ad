"""The app freezes its start-up objects out of the garbage collector while it runs."""

from __future__ import annotations

import gc

from firewatch.app import create_app
from firewatch.settings import Settings


async def test_start_up_objects_are_frozen_while_the_app_runs(settings: Settings) -> None:
    app = create_app(settings)
    gc.unfreeze()
    async with app.router.lifespan_context(app):
        frozen = gc.get_freeze_count()
        # the app, its routes and every imported module are beyond a full collection
        assert frozen > 10_000
        assert gc.isenabled()
    assert gc.get_freeze_count() == 0  # collectable again once the app stopped
