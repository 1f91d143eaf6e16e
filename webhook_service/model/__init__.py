"""What a message is, whatever provider it came from and wherever it is stored: the canonical events
adapters produce (`events.py`), statuses and their order (`statuses.py`), phone numbers (`phone.py`), the
JSON consumers read (`message_json.py`), and media credentials (`credentials.py`)."""
