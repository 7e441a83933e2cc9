"""`volumeConstraints.allocation: "optimal"`: the largest total score under the same caps, exactly.

Each customer takes at most `maxOffersPerCustomer` offers (at most one per category when the flow says
so), each offer at most `maxPerOffer`, each channel at most `maxPerChannel`, the run at most
`maxTotalPerRun`. An offer goes out on one channel per campaign, so the caps nest (offer within channel
within total) and the problem is a min-cost flow, solved by OR-Tools' network simplex:

    source -> customer (cap k) [-> customer x category (cap 1)] -> offer (cap 1, cost -score)
           -> channel (cap maxPerOffer) -> total (cap maxPerChannel) -> sink (cap maxTotalPerRun)
    source -> sink (the flow not used)

Unlike greedy, optimal considers every eligible offer of a customer (not only the top k), so a
customer whose best offer is full can receive the next one. The candidate graph is loaded into the
solver (about 40 bytes per eligible pair): this mode is for runs of up to a few million pairs; greedy
stays set-based at any size. The greedy value is computed on the same candidates for comparison."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from overture.data.source import Column, DataSource, TableRef
from overture.errors import OvertureError

if TYPE_CHECKING:
    from overture.batch.engine import Compiled

__all__ = ["decide"]

#: Scores become integer costs at this resolution (network simplex needs integers).
SCALE = 1_000_000


class SolverError(OvertureError):
    status_code = 500
    code = "solver_error"


def decide(conn: sa.Connection, source: DataSource, compiled: Compiled, cands: Any) -> tuple[Any, float]:
    """Solve the allocation; returns the decided rows (as a subquery shaped like greedy's) and the
    value greedy reaches on the same candidates."""
    from overture.batch.engine import greedy_select

    plan = compiled.plan
    name = plan.table
    # 1. Candidates with a row id, a dense customer number and their rank within the customer.
    table_cols = [
        sa.Column("rid", sa.BigInteger()),
        sa.Column("cust_no", sa.BigInteger()),
        sa.Column("pos", sa.Integer()),
        *[sa.Column(c.key, _type_of(c, compiled)) for c in cands.c],
    ]
    cand_table = sa.Table(f"{name}_cands", sa.MetaData(), *table_cols)
    cand_table.create(conn)
    c = cands.c
    order = [c.customer_id, c.offer_idx]
    conn.execute(
        sa.insert(cand_table).from_select(
            [col.name for col in table_cols],
            sa.select(
                sa.func.row_number().over(order_by=order).label("rid"),
                sa.func.dense_rank().over(order_by=c.customer_id).label("cust_no"),
                sa.func.row_number()
                .over(partition_by=c.customer_id, order_by=compiled.rank_key(c))
                .label("pos"),
                *c,
            ),
        )
    )
    t = cand_table.c
    rows = conn.execute(
        sa.select(t.rid, t.cust_no, t.offer_idx, t.chan_idx, t.cat_idx, t.score, t.pos).order_by(t.rid)
    ).all()
    # 2. The greedy value on the same candidates (for the report).
    plain = sa.select(*[t[c.key] for c in cands.c]).subquery("gc")
    greedy = greedy_select(compiled, plain).subquery("g")
    greedy_value = float(
        conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(greedy.c.score), 0.0)).where(greedy.c.reason.is_(None))
        ).scalar_one()
    )
    decisions = _solve(compiled, rows)
    # 3. The decisions back into the engine, then shaped like greedy's output.
    alloc = TableRef(f"{name}_alloc")
    sa.Table(
        alloc.name, sa.MetaData(), sa.Column("rid", sa.BigInteger()), sa.Column("reason", sa.String())
    ).create(conn)
    source.insert_rows(
        conn,
        alloc,
        [Column("rid", "BIGINT", "integer"), Column("reason", "VARCHAR", "string")],
        [{"rid": rid, "reason": reason} for rid, reason in decisions],
    )
    a = alloc.table(["rid", "reason"])
    cols: list[Any] = [t.customer_id, t.offer_idx, t.score, t.pos, a.c.reason]
    if "personalization" in t:
        cols.append(t.personalization)
    decided = sa.select(*cols).select_from(cand_table.join(a, a.c.rid == t.rid)).subquery("decided")
    return decided, greedy_value


def _type_of(col: Any, compiled: Compiled) -> Any:
    if col.key == "customer_id":
        return compiled.key_type
    if col.key == "score":
        return sa.Float(precision=53)
    if col.key == "personalization":
        return sa.String()
    return sa.Integer()


def _solve(compiled: Compiled, rows: Sequence[Any]) -> list[tuple[int, str | None]]:
    """(rid, reason) for every chosen pair (reason None) and for the best pair of each customer left
    without any (reason: the cap that is full)."""
    from ortools.graph.python import min_cost_flow

    plan = compiled.plan
    if not rows:
        return []
    arr = np.array([tuple(r) for r in rows], dtype=np.float64)
    rid = arr[:, 0].astype(np.int64)
    cust = arr[:, 1].astype(np.int64) - 1
    offer = arr[:, 2].astype(np.int64)
    chan = arr[:, 3].astype(np.int64)
    cat = arr[:, 4].astype(np.int64)
    score = arr[:, 5]
    pos = arr[:, 6].astype(np.int64)
    n_cust = int(cust.max()) + 1
    n_offer = len(plan.offers)
    n_chan = int(chan.max()) + 1
    k = plan.per_customer
    big = n_cust * k
    cap = {
        "offer": plan.max_per_offer or big,
        "channel": plan.max_per_channel or big,
        "total": plan.max_total or big,
    }
    source, sink, total = 0, 1, 2
    chan0 = 3
    offer0 = chan0 + n_chan
    cust0 = offer0 + n_offer
    tails: list[np.ndarray] = []
    heads: list[np.ndarray] = []
    caps: list[np.ndarray] = []
    costs: list[np.ndarray] = []

    def arcs(t: Any, h: Any, c: Any, w: Any) -> None:
        tails.append(np.asarray(t, dtype=np.int64))
        heads.append(np.asarray(h, dtype=np.int64))
        caps.append(np.asarray(c, dtype=np.int64))
        costs.append(np.asarray(w, dtype=np.int64))

    customers = np.arange(n_cust)
    arcs(np.full(n_cust, source), cust0 + customers, np.full(n_cust, k), np.zeros(n_cust))
    if plan.one_per_category:
        pairs, pair_of = np.unique(cust * (cat.max() + 1) + cat, return_inverse=True)
        cc0 = cust0 + n_cust
        pair_cust = pairs // (cat.max() + 1)
        arcs(cust0 + pair_cust, cc0 + np.arange(len(pairs)), np.ones(len(pairs)), np.zeros(len(pairs)))
        pick_tail = cc0 + pair_of
    else:
        pick_tail = cust0 + cust
    first_pick = sum(len(x) for x in tails)
    arcs(pick_tail, offer0 + offer, np.ones(len(rid)), -np.rint(score * SCALE))
    offer_chan = np.zeros(n_offer, dtype=np.int64)
    offer_chan[offer] = chan
    arcs(offer0 + np.arange(n_offer), chan0 + offer_chan, np.full(n_offer, cap["offer"]), np.zeros(n_offer))
    arcs(chan0 + np.arange(n_chan), np.full(n_chan, total), np.full(n_chan, cap["channel"]), np.zeros(n_chan))
    arcs([total], [sink], [cap["total"]], [0])
    arcs([source], [sink], [big], [0])
    flow = min_cost_flow.SimpleMinCostFlow()
    flow.add_arcs_with_capacity_and_unit_cost(
        np.concatenate(tails), np.concatenate(heads), np.concatenate(caps), np.concatenate(costs)
    )
    n_nodes = int(max(np.concatenate(tails).max(), np.concatenate(heads).max())) + 1
    supplies = np.zeros(n_nodes, dtype=np.int64)
    supplies[source], supplies[sink] = big, -big
    flow.set_nodes_supplies(np.arange(n_nodes), supplies)
    status = flow.solve()
    if status != flow.OPTIMAL:
        raise SolverError(f"the optimal allocation could not be solved (status {status})")
    chosen = flow.flows(np.arange(first_pick, first_pick + len(rid))) > 0
    decisions: list[tuple[int, str | None]] = [(int(r), None) for r in rid[chosen]]
    # Customers left without any offer: their best pair, with the cap that stopped it.
    per_offer = np.bincount(offer[chosen], minlength=n_offer)
    per_chan = np.bincount(chan[chosen], minlength=n_chan)
    served = np.zeros(n_cust, dtype=bool)
    served[cust[chosen]] = True
    left = np.nonzero((pos == 1) & ~served[cust])[0]
    offer_full = per_offer[offer[left]] >= (plan.max_per_offer or big + 1)
    channel_full = per_chan[chan[left]] >= (plan.max_per_channel or big + 1)
    reasons = np.where(offer_full, "maxPerOffer", np.where(channel_full, "maxPerChannel", "maxTotalPerRun"))
    decisions += [(int(r), str(reason)) for r, reason in zip(rid[left], reasons, strict=True)]
    return decisions
