"""The intake: a provider's webhook in, durably stored, out as canonical messages and feed events.

`http.py` (the endpoint) -> `processing.py` (verify, parse, store; also replays) -> `message_store.py`
(the one transaction). Refused requests go to `quarantine.py`; `redaction.py` is what any kept request
looks like; `retention.py` prunes old ones."""
