"""The operator console at /console/: server-rendered pages over the same queries the read API and the CLI
use (database/request_log.py, database/quarantine.py, database/messages.py, media/attachments.py), with
the intake's replay and the pipeline's retry as its actions. `blueprint.py` is its entry."""
