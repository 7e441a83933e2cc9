"""Delivery: destinations (webhook, SMTP, file/S3, log) behind one interface, and the egress guard."""
