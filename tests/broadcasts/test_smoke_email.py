"""An email broadcast end to end through a real SMTP server: template -> preflight -> send-now ->
counts from rows, HTML with inlined CSS and a text part, drop reasons listable."""

from __future__ import annotations

from overture.broadcasts.execution import derived_counts
from tests.broadcasts.conftest import Api, Mailbox, customers, source_sql


def test_email_broadcast__send_now__counts_add_up_and_mail_arrives(api: Api, smtp_server: Mailbox) -> None:
    # Given 30 customers, 2 without an email and 1 with a broken one, 5 excluded by a segment
    table = customers(api.ctx, 30)
    source_sql(api.ctx, f"UPDATE {table} SET email = NULL WHERE customer_id IN ('c000001', 'c000002')")
    source_sql(api.ctx, f"UPDATE {table} SET email = 'broken' WHERE customer_id = 'c000003'")
    model = api.model(table)
    everyone = api.segment(model)
    excluded = api.segment(
        model, {"field": "customer_id", "operator": "in", "value": [f"c00002{i}" for i in range(5)]}
    )
    template = api.template()
    b = api.broadcast(
        templateId=template,
        destinationId=api.smtp(smtp_server.port),
        audience={"included": [everyone], "excluded": [excluded]},
    )
    api.post(f"/broadcasts/{b['id']}/reach")
    # When it is sent now
    execution = api.post(f"/broadcasts/{b['id']}/send-now", expect=202)
    api.finish()
    # Then
    done = api.get(f"/broadcasts/{b['id']}/executions/{execution['id']}")
    counts = done["counts"]
    assert done["status"] == "completed", done
    assert (counts["scheduled"], counts["hydrated"], counts["composed"]) == (25, 25, 22)
    assert counts["injected"] == counts["sent"] + counts["failed"] == 22
    assert len(smtp_server.messages) == 22
    with api.ctx.transaction() as session:
        assert {k: v for k, v in derived_counts(session, execution["id"]).items()} == {
            k: counts[k] for k in derived_counts(session, execution["id"])
        }
    _, _, message = smtp_server.messages[0]
    html = message.get_body(("html",)).get_content()
    assert 'style="color: #333;"' in html and "<style>" not in html
    text = message.get_body(("plain",)).get_content()
    assert "Hi First" in text and "Unsubscribe" in text
    dropped = api.get(f"/broadcasts/{b['id']}/executions/{execution['id']}/recipients?outcome=dropped")
    assert {r["entityId"] for r in dropped["recipients"]} == {"c000001", "c000002", "c000003"}
    assert all("no usable address" in r["reason"] for r in dropped["recipients"])
