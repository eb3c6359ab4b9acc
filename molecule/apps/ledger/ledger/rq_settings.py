"""Settings of the worker (rq worker -c ledger.rq_settings, Procfile): the Redis URL
from the environment, not from the command line, where ps and the journal would
show its password."""

import os

REDIS_URL = os.environ["REDIS_URL"]
QUEUES = ["ledger"]
