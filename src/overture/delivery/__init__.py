"""Delivery: destinations (webhook, SMTP, file/S3, log) behind one interface, and the egress guard.

The outbox dispatcher calls `send_batch(ctx, destination, messages)`; batch campaigns call
`write_file(ctx, destination, rows, name)`. Every outbound connection goes through
`overture.delivery.egress`."""

from overture.delivery.adapters.file import write_file
from overture.delivery.messages import Message, Outcome
from overture.delivery.models import Destination
from overture.delivery.service import get_destination, send_batch

__all__ = ["Destination", "Message", "Outcome", "get_destination", "send_batch", "write_file"]
