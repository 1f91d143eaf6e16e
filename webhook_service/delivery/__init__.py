"""Push delivery: every event of the feed, signed and POSTed to the endpoints consumers register."""
