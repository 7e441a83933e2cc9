"""Member state in the profile data source, and the set-based statements a run is made of.

Each journey has three tables beside the profiles they are joined with, so every transition is a
statement inside the source and never a row trip through Python:

* ``<ws prefix>jrn_<journey hex>_members`` — one row per membership (member, entry number): status,
  the tile it stands on, until when it waits, why it left, when it last changed;
* ``…_path`` — the member's history: one row per membership and step, holding the ordered events of
  that step (``entered:tile-1 arrived:tile-2 arrived:tile-3``) — within a step every event happens at
  the step's instant, so one row per member and step loses nothing and writes a quarter of the rows;
* ``…_steps`` — one row per step: its run, its instant, and how many members it entered, moved,
  removed, completed and synced (so run counts are exact, and survive a crash, by construction).

The modules: `tables` (the three tables, their column lists, creating and dropping them), `passes`
(a pass: who leaves, who moves and where, applied set-based), `syncs` (members on a sync tile read
in batches and moved on once their messages are committed), `reads` (counts, stats, one member's
path). The tables carry the workspace prefix of Overture-managed tables, so no other workspace can
model them.
"""
