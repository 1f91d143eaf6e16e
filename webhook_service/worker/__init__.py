"""The worker: the queue that wakes downloads (`queue.py`), its consumer threads (`consumer.py`) woken
across processes (`wake.py`), and the supervisor of the consumer processes (`supervisor.py`)."""
