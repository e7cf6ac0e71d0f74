# gunicorn configuration of the search API and its web UI (search_api:create_app) in production:
#   gunicorn -c deploy/gunicorn.conf.py
# Address, processes and threads come from LOOKALIKE_API_BIND, LOOKALIKE_API_WORKERS and
# LOOKALIKE_API_THREADS (indexer/config.py); the same options serve `lookalike serve`.
# They include the on_starting and child_exit hooks through which /metrics sums every worker
# (files in LOOKALIKE_API_METRICS_DIR, emptied at start): do not override those two here.
from indexer.config import load_settings
from search_api.serve import WSGI_APP, gunicorn_options

wsgi_app = WSGI_APP
globals().update(gunicorn_options(load_settings()))
