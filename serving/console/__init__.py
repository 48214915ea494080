"""The ops console: server-rendered pages (Jinja2 and a vendored htmx, no front-end build) over
the ledger, the registry and the monitoring runs, mounted by the service at ``/console``.

Pages: the inbox of actions waiting for approval (approve or reject with a comment), one action
with everything around it, history per customer, cell or incident with the audit chain's
status, the live feed of events and what they led to, dead letters (retry), models and drift.
"""
