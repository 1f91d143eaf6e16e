"""The test `app` served over real HTTP on 127.0.0.1, for clients that must run unchanged (the seeds'
`requests`, curl and Node examples): `live_server` is its base URL, "http://127.0.0.1:<port>"."""
from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server


@pytest.fixture
def live_server(app) -> Iterator[str]:
    # Port 0: the OS picks a free port as the server binds, so no other test or worker can take it.
    server = make_server("127.0.0.1", 0, app, threaded=True)
    # A short poll interval: shutdown() waits for the loop to notice it.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="live-server",
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
