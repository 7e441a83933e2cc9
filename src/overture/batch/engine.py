"""One batch run as a handful of set-based statements in the profile data source.

1. `<t>_offers`: the run's offers (a few rows: index, id, name, category, priority, channel, creative),
   so every later statement resolves names by a join and never by Python.
2. `<t>`: one INSERT ... SELECT computes, in the engine,
   - the segment's customers (the model filtered by the segment);
   - eligible (customer, offer) pairs: the flow's eligibility, each offer's own, one UNION ALL branch
     per offer carrying its score (the propensity compiled to SQL: a constant, a column, or the
     logistic `1 / (1 + exp(-(intercept + sum(w * x))))` with nulls as 0);
   - ranks per customer (`row_number()` by the flow's ranking, ties by offer id), the category rule and
     the per-customer cut (`maxOffersPerCustomer`);
   - the volume constraints, greedily in descending score (ties: customer id, then offer id): the
     best `maxPerOffer` rows of each offer, then among those left the best `maxPerChannel` of each
     channel, then the best `maxTotalPerRun` overall; a row cut records the constraint that cut it;
   - customers without any eligible pair (`notEligible`), and the rank among the offers each customer
     finally receives.
3. the file (`overture.batch.output`), written by the engine from `<t>` joined with `<t>_offers`:
   DuckDB `COPY`, PostgreSQL `COPY ... TO STDOUT` streamed in chunks, other engines a server-side
   cursor in chunks.

The same data gives the same table and the same file byte for byte (every order has a total tie-break).
`<t>` stays after the run: the per-customer results API pages through it."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from overture.batch.schemas import CustomerOffer, CustomerResult, CustomersPage
from overture.core.encode import to_json
from overture.core.filters import FilterError, SqlModel, fields_of, parse
from overture.data import service as data
from overture.data.models import EntityModel
from overture.data.source import DataSource, TableRef, workspace_prefix
from overture.db.session import Session
from overture.errors import Invalid, NotFound

__all__ = ["REASONS", "OfferPlan", "RunPlan", "Summary", "build_results", "results_table"]

#: Why a customer got nothing (customer-level, counted once), in the seed's names.
REASONS = ("maxPerOffer", "maxPerChannel", "maxTotalPerRun", "notEligible")
#: The linear term of the logistic is clamped here: exp() of more overflows on PostgreSQL.
_LOGIT_BOUND = 500.0
_CHUNK = 10_000


@dataclass(frozen=True)
class OfferPlan:
    """An offer as one run sees it: its position (ties break by offer id, so offers are sorted by id)
    and the channel and creative it goes out with in this campaign."""

    idx: int
    id: str
    name: str
    category: str | None
    priority: int
    channel_id: str | None
    channel_name: str | None
    creative: str | None
    eligibility: Any
    propensity: dict[str, Any]

    def as_row(self) -> dict[str, Any]:
        return {
            "offer_idx": self.idx,
            "offer_id": self.id,
            "offer_name": self.name,
            "category": self.category,
            "priority": self.priority,
            "channel_id": self.channel_id,
            "channel": self.channel_name,
            "creative": self.creative,
        }


@dataclass(frozen=True)
class RunPlan:
    """Everything a run executes, snapshotted from the campaign when it starts."""

    workspace_id: str
    run_id: str
    model: EntityModel
    segment_filter: Any
    flow_eligibility: Any
    ranking: str
    per_customer: int
    one_per_category: bool
    max_total: int | None
    max_per_offer: int | None
    max_per_channel: int | None
    allocation: str
    offers: tuple[OfferPlan, ...]
    columns: tuple[str, ...]
    format: str

    @property
    def table(self) -> str:
        return results_table(self.workspace_id, self.run_id)


@dataclass
class Summary:
    total: int = 0
    recommended: int = 0
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    by_offer: dict[int, int] = field(default_factory=dict)
    rows: int = 0
    value: float = 0.0

    @property
    def processed(self) -> int:
        """Customers not cut by a volume constraint (those served plus those no offer fits)."""
        return self.recommended + self.skipped["notEligible"]


def results_table(workspace_id: str, run_id: str) -> str:
    """The run's per-customer table: carries the workspace prefix, so no other workspace's model reads it."""
    return f"{workspace_prefix(workspace_id)}batch_{run_id.replace('-', '')[:32]}"


def offers_table(name: str) -> sa.Table:
    return sa.Table(
        f"{name}_offers",
        sa.MetaData(),
        sa.Column("offer_idx", sa.Integer()),
        sa.Column("offer_id", sa.String()),
        sa.Column("offer_name", sa.String()),
        sa.Column("category", sa.String()),
        sa.Column("priority", sa.Integer()),
        sa.Column("channel_id", sa.String()),
        sa.Column("channel", sa.String()),
        sa.Column("creative", sa.String()),
    )


def results_columns(name: str, key_type: Any, personalization: bool) -> sa.Table:
    cols = [
        sa.Column("customer_id", key_type),
        sa.Column("offer_idx", sa.Integer()),
        sa.Column("score", sa.Float(precision=53)),
        sa.Column("pos", sa.Integer()),
        sa.Column("reason", sa.String()),
        sa.Column("rank", sa.Integer()),
    ]
    if personalization:
        cols.append(sa.Column("personalization", sa.String()))
    return sa.Table(name, sa.MetaData(), *cols)


# -- compiling the plan ----------------------------------------------------------------------------
class Compiled:
    """The plan's SQL pieces over the model's relation."""

    def __init__(self, session: Session, plan: RunPlan) -> None:
        self.plan = plan
        relation, sql_model = data.relation_for(session, plan.model)
        self.relation = relation
        self.sql_model = sql_model
        self.key = relation.c[plan.model.primary_key]
        self.segment = data.compile_against(session, sql_model, plan.segment_filter, root="segment.filter")
        self.flow = data.compile_against(
            session, sql_model, plan.flow_eligibility, root="decisionFlow.eligibility"
        )
        self.eligible = {o.idx: _offer_filter(session, sql_model, o) for o in plan.offers}
        self.personalization = "personalization" in plan.columns
        key_type = self.key.type
        self.key_type = sa.String() if isinstance(key_type, sa.types.NullType) else key_type

    def members(self) -> sa.Select[Any]:
        return sa.select(self.key.label("customer_id")).select_from(self.relation).where(self.segment)

    def score(self, offer: OfferPlan, dialect: str) -> sa.ColumnElement[float]:
        p = offer.propensity
        kind = p.get("type")
        if kind == "constant":
            return sa.cast(sa.literal(float(p["value"])), sa.Float(precision=53))
        if kind == "column":
            x = self._feature(str(p["column"]), offer)
            return _clamp(x, 0.0, 1.0, dialect)
        if kind == "logistic":
            z: sa.ColumnElement[float] = sa.cast(sa.literal(float(p.get("intercept") or 0.0)), sa.Float(53))
            for column, weight in sorted((p.get("weights") or {}).items()):
                z = z + sa.cast(sa.literal(float(weight)), sa.Float(53)) * self._feature(column, offer)
            z = _clamp(z, -_LOGIT_BOUND, _LOGIT_BOUND, dialect)
            score: sa.ColumnElement[float] = sa.cast(1.0 / (1.0 + sa.func.exp(-z)), sa.Float(53))
            return score
        raise Invalid(f"offer '{offer.name}': unknown propensity type {kind!r}", field="propensity")

    def _feature(self, column: str, offer: OfferPlan) -> sa.ColumnElement[float]:
        col = self.sql_model.columns.get(column)
        if col is None:
            raise Invalid(
                f"offer '{offer.name}': propensity column '{column}' is not a column of model "
                f"'{self.plan.model.name}'",
                field="propensity",
            )
        if isinstance(col.type, sa.Boolean):
            return sa.case((col.is_(True), 1.0), else_=0.0)
        return sa.func.coalesce(sa.cast(col, sa.Float(precision=53)), 0.0)

    def _personal_fields(self, offer: OfferPlan) -> list[str]:
        names: set[str] = set()
        for raw in (self.plan.flow_eligibility, offer.eligibility):
            with contextlib.suppress(FilterError):
                names |= fields_of(parse(raw))
        p = offer.propensity
        names |= {p["column"]} if p.get("type") == "column" else set((p.get("weights") or {}).keys())
        return sorted(n for n in names if n in self.sql_model.columns)

    def personal(self, offer: OfferPlan, dialect: str) -> sa.ColumnElement[str]:
        """The per-customer values the decision used, as a JSON object."""
        args: list[Any] = []
        for name in self._personal_fields(offer):
            args += [sa.literal_column(sql_string(name)), self.sql_model.columns[name]]
        fn = sa.func.json_build_object if dialect == "postgresql" else sa.func.json_object
        return sa.cast(fn(*args), sa.String())

    def candidates(self, dialect: str, *, with_personalization: bool) -> sa.Subquery:
        """Eligible (customer, offer) pairs with score, priority, category and channel positions."""
        categories = {c: i for i, c in enumerate(sorted({o.category or "" for o in self.plan.offers}))}
        channels = {c: i for i, c in enumerate(sorted({o.channel_id or "" for o in self.plan.offers}))}
        branches = []
        for offer in self.plan.offers:
            where = [self.segment, self.flow, self.eligible[offer.idx]]
            cols: list[Any] = [
                self.key.label("customer_id"),
                _int(offer.idx).label("offer_idx"),
                sa.cast(self.score(offer, dialect), sa.Float(precision=53)).label("score"),
                _int(offer.priority).label("priority"),
                _int(categories[offer.category or ""]).label("cat_idx"),
                _int(channels[offer.channel_id or ""]).label("chan_idx"),
            ]
            if with_personalization:
                cols.append(self.personal(offer, dialect).label("personalization"))
            branches.append(sa.select(*cols).select_from(self.relation).where(*where))
        if not branches:
            cols = [
                sa.cast(sa.null(), self.key_type).label("customer_id"),
                *(_int(0).label(n) for n in ("offer_idx",)),
                sa.cast(sa.null(), sa.Float(53)).label("score"),
                *(_int(0).label(n) for n in ("priority", "cat_idx", "chan_idx")),
            ]
            if with_personalization:
                cols.append(sa.cast(sa.null(), sa.String()).label("personalization"))
            return sa.select(*cols).where(sa.false()).subquery("cands")
        union = branches[0] if len(branches) == 1 else sa.union_all(*branches)
        return union.subquery("cands")

    def rank_key(self, c: Any) -> list[Any]:
        ranking = self.plan.ranking
        if ranking == "score":
            first = c.score.desc()
        elif ranking == "priority_weighted_score":
            first = (c.priority * c.score).desc()
        else:
            first = c.priority.desc()
        return [first, c.offer_idx]


def _clamp(x: Any, low: float, high: float, dialect: str) -> sa.ColumnElement[float]:
    """x limited to [low, high]: GREATEST/LEAST, or SQLite's scalar max/min."""
    if dialect == "sqlite":
        clamped: sa.ColumnElement[float] = sa.func.max(sa.func.min(x, high), low)
    else:
        clamped = sa.func.greatest(sa.func.least(x, high), low)
    return clamped


def _int(value: int) -> sa.ColumnElement[int]:
    return sa.literal_column(str(int(value)), sa.Integer())


def sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _offer_filter(session: Session, sql_model: SqlModel, offer: OfferPlan) -> sa.ColumnElement[bool]:
    try:
        return data.compile_against(session, sql_model, offer.eligibility, root="eligibility")
    except Invalid as exc:
        raise Invalid(f"offer '{offer.name}': {exc.message}", field=exc.field)


# -- the pipeline ----------------------------------------------------------------------------------
def greedy_select(compiled: Compiled, cands: Any) -> sa.Select[Any]:
    """Candidates after the category rule and the per-customer cut, with the constraint that cut each
    (NULL: kept): the greedy allocation in descending score."""
    plan = compiled.plan
    if plan.one_per_category:
        by_cat = sa.select(
            cands,
            sa.func.row_number()
            .over(partition_by=[cands.c.customer_id, cands.c.cat_idx], order_by=compiled.rank_key(cands.c))
            .label("cat_pos"),
        ).subquery("by_cat")
        names = [col.key for col in cands.c]
        cands = sa.select(*[by_cat.c[n] for n in names]).where(by_cat.c.cat_pos == 1).subquery("c1")
    ranked = sa.select(
        cands,
        sa.func.row_number()
        .over(partition_by=cands.c.customer_id, order_by=compiled.rank_key(cands.c))
        .label("pos"),
    ).subquery("ranked")
    cut = (
        sa.select(*ranked.c, sa.cast(sa.null(), sa.String()).label("reason"))
        .where(ranked.c.pos <= plan.per_customer)
        .subquery("cut")
    )
    layers = (
        ("maxPerOffer", plan.max_per_offer, "offer_idx"),
        ("maxPerChannel", plan.max_per_channel, "chan_idx"),
        ("maxTotalPerRun", plan.max_total, None),
    )
    current = cut
    for reason, cap, part in layers:
        if cap is None:
            continue
        c = current.c
        open_ = c.reason.is_(None)
        partition = [sa.case((open_, 1), else_=0)] + ([c[part]] if part else [])
        n = sa.func.row_number().over(
            partition_by=partition, order_by=[c.score.desc(), c.customer_id, c.offer_idx]
        )
        new_reason = sa.case((sa.and_(open_, n > cap), sa.literal(reason)), else_=c.reason)
        others = [col for col in c if col.key != "reason"]
        current = sa.select(*others, new_reason.label("reason")).subquery(f"l_{reason}")
    return sa.select(current)


def final_select(compiled: Compiled, decided: Any, *, with_personalization: bool) -> sa.Select[Any]:
    """Every customer of the segment with its decided rows (or one notEligible row), and the rank of
    each offer it receives."""
    members = compiled.members().subquery("members")
    d = decided
    kept = sa.and_(d.c.offer_idx.is_not(None), d.c.reason.is_(None))
    if compiled.plan.per_customer == 1 and compiled.plan.allocation != "optimal":
        rank: Any = sa.case((kept, 1), else_=sa.null())  # one row per customer: no window needed
    else:
        rank = sa.case(
            (
                kept,
                sa.func.row_number().over(
                    partition_by=[members.c.customer_id, sa.case((kept, 1), else_=0)], order_by=d.c.pos
                ),
            ),
            else_=sa.null(),
        )
    cols: list[Any] = [
        members.c.customer_id,
        d.c.offer_idx,
        d.c.score,
        d.c.pos,
        sa.case((d.c.offer_idx.is_(None), sa.literal("notEligible")), else_=d.c.reason).label("reason"),
        rank.label("rank"),
    ]
    if with_personalization:
        cols.append(d.c.personalization)
    return sa.select(*cols).select_from(members.outerjoin(d, d.c.customer_id == members.c.customer_id))


def build_results(source: DataSource, plan: RunPlan, compiled: Compiled) -> float | None:
    """(Re)create the run's tables: a resumed attempt starts from scratch and ends with the same rows.
    Returns the greedy value of an optimal allocation (None for greedy runs)."""
    from overture.batch import optimal

    name = plan.table
    with source.begin() as conn:
        drop_results(conn, name)
        offers = offers_table(name)
        offers.create(conn)
        if plan.offers:
            conn.execute(offers.insert(), [o.as_row() for o in plan.offers])
        results = results_columns(name, compiled.key_type, compiled.personalization)
        results.create(conn)
        cands = compiled.candidates(source.dialect, with_personalization=compiled.personalization)
        greedy_value = None
        if plan.allocation == "optimal":
            decided, greedy_value = optimal.decide(conn, source, compiled, cands)
        else:
            decided = greedy_select(compiled, cands).subquery("decided")
        select = final_select(compiled, decided, with_personalization=compiled.personalization)
        conn.execute(sa.insert(results).from_select([c.name for c in results.columns], select))
    return greedy_value


def drop_results(conn: sa.Connection, name: str) -> None:
    for table in (name, f"{name}_offers", f"{name}_cands", f"{name}_alloc"):
        sa.Table(table, sa.MetaData()).drop(conn, checkfirst=True)


def summarize(source: DataSource, plan: RunPlan) -> Summary:
    """Customer-level counts (each customer once) and recommendations per offer."""
    t = results_ref(plan.table)
    per_customer = (
        sa.select(
            t.c.customer_id,
            sa.func.max(sa.case((t.c.rank.is_not(None), 1), else_=0)).label("got"),
            sa.func.max(sa.case((sa.or_(t.c.pos.is_(None), t.c.pos == 1), t.c.reason))).label("reason"),
        )
        .group_by(t.c.customer_id)
        .subquery("pc")
    )
    summary = Summary()
    with source.connect() as conn:
        for got, reason, count in conn.execute(
            sa.select(per_customer.c.got, per_customer.c.reason, sa.func.count()).group_by(
                per_customer.c.got, per_customer.c.reason
            )
        ):
            summary.total += int(count)
            if got:
                summary.recommended += int(count)
            else:
                summary.skipped[str(reason or "notEligible")] += int(count)
        for idx, count, value in conn.execute(
            sa.select(t.c.offer_idx, sa.func.count(), sa.func.sum(t.c.score))
            .where(t.c.rank.is_not(None))
            .group_by(t.c.offer_idx)
        ):
            summary.by_offer[int(idx)] = int(count)
            summary.rows += int(count)
            summary.value += float(value or 0.0)
    return summary


# -- per-customer results --------------------------------------------------------------------------
def results_ref(name: str) -> sa.TableClause:
    """The results table for reading (the key column untyped: it is whatever the model's key is)."""
    return sa.table(
        name,
        sa.column("customer_id"),
        sa.column("offer_idx", sa.Integer()),
        sa.column("score", sa.Float(precision=53)),
        sa.column("pos", sa.Integer()),
        sa.column("reason", sa.String()),
        sa.column("rank", sa.Integer()),
    )


def _encode_cursor(key: Any) -> str:
    raw = json.dumps({"after": key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> Any:
    try:
        doc = json.loads(base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()))
        if not isinstance(doc, dict) or not isinstance(doc.get("after"), str | int | float):
            raise ValueError
        return doc["after"]
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Invalid("cursor: not a cursor this endpoint returned", field="cursor")


def customers_page(
    source: DataSource, name: str, *, status: str | None, cursor: str | None, limit: int
) -> CustomersPage:
    """One page of customers in key order, each with its offers (names resolved) or the reason it got
    none; `status` keeps only `recommended` or only `skipped` customers. Keyset pagination."""
    t = results_ref(name)
    o = offers_table(name)
    with source.connect() as conn:
        if source.table_columns(conn, TableRef(name)) is None:
            raise NotFound(
                "per-customer results of this run are no longer kept (a campaign's newest runs keep them); "
                "its summary and file remain"
            )
    got = sa.func.max(sa.case((t.c.rank.is_not(None), 1), else_=0))
    reason = sa.func.max(sa.case((sa.or_(t.c.pos.is_(None), t.c.pos == 1), t.c.reason)))
    query = sa.select(t.c.customer_id, got.label("got"), reason.label("reason")).group_by(t.c.customer_id)
    if cursor:
        query = query.where(t.c.customer_id > _decode_cursor(cursor))
    if status is not None:
        query = query.having(got == (1 if status == "recommended" else 0))
    query = query.order_by(t.c.customer_id).limit(limit + 1)
    with source.connect() as conn:
        heads = conn.execute(query).all()[: limit + 1]
        more = len(heads) > limit
        heads = heads[:limit]
        ids = [h.customer_id for h in heads]
        offers: dict[Any, list[CustomerOffer]] = {i: [] for i in ids}
        if ids:
            rows = conn.execute(
                sa.select(t.c.customer_id, t.c.score, t.c.rank, *o.c)
                .select_from(t.join(o, o.c.offer_idx == t.c.offer_idx))
                .where(t.c.customer_id.in_(ids), t.c.rank.is_not(None))
                .order_by(t.c.customer_id, t.c.rank)
            ).all()
            for r in rows:
                offers[r.customer_id].append(
                    CustomerOffer(
                        offer_id=r.offer_id,
                        offer_name=r.offer_name,
                        channel_id=r.channel_id,
                        channel=r.channel,
                        creative=r.creative,
                        category=r.category,
                        score=float(r.score),
                        rank=int(r.rank),
                    )
                )
    customers = [
        CustomerResult(
            customer_id=to_json(h.customer_id),
            status="recommended" if h.got else "skipped",
            reason=None if h.got else (h.reason or "notEligible"),
            offers=offers[h.customer_id],
        )
        for h in heads
    ]
    next_cursor = _encode_cursor(to_json(ids[-1])) if more and ids else None
    return CustomersPage(customers=customers, next_cursor=next_cursor)
