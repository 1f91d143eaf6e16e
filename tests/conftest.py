# Fixture modules, one per concern, so independent parts of the suite do not share one big file.
pytest_plugins = [
    "tests.plugins.services",
    "tests.plugins.blob_servers",
    "tests.plugins.app",
    "tests.plugins.media_server",
    "tests.plugins.live_server",
]
