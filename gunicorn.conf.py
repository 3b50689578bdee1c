"""Production serving: ``gunicorn -c gunicorn.conf.py app:app``.

The checks are CPU-bound (parsing FHIR, running rules) with short waits on
the EHR's FHIR server, so: one process per core for the CPU part, a few
threads per process to overlap the waits. Timeouts stay below what an EHR
waits for a hook (a few seconds), so a stuck worker is replaced before the
EHR gives up on us.
"""
import gc
import multiprocessing
import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8080')}"
# Trust X-Forwarded-Proto/-Ssl and the forwarded SCRIPT_NAME/PATH_INFO only
# from the proxies named here. gunicorn's own default trusts 127.0.0.1, so any
# local process (a sidecar, another container on the host network) could make
# a request look like https; we trust no one unless told. Behind a TLS proxy:
# FORWARDED_ALLOW_IPS=<the proxy's address or CIDR>. The JWT audience never
# depends on these headers (CDS_PUBLIC_BASE_URL is required with auth on).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
worker_class = "gthread"
# Each worker listens on its own socket (SO_REUSEPORT) and the kernel spreads new connections
# over them; on one shared socket, a few long-lived keep-alive connections (an EHR's pool) could
# all land on one worker while the others idled (bench/README.md, "Connection balance").
reuse_port = os.environ.get("GUNICORN_REUSE_PORT", "true").lower() not in ("0", "false", "no", "off")
# Threads overlap waits on FHIR servers (I/O, the GIL released); CDS_FHIR_MAX_WAITING_CALLS (6) of
# them at most may wait, so 2 always remain for /healthz and calls whose data was all prefetched.
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = 20  # hard kill of a stuck worker
graceful_timeout = 20  # SIGTERM: finish in-flight hook calls, then exit
keepalive = 5
# No recycling after N requests: with a socket per worker (reuse_port), a retiring worker's
# socket takes the connections queued on it down with it (measured: 1,526 socket errors in 10 s
# at 8 clients with recycling every ~100 requests, none without; bench/README.md). Nothing here
# grows without bound (the caches are LRU-bounded; peak RSS per worker is reported by bench/run.py).
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
accesslog = "-"
errorlog = "-"
access_log_format = (
    '{"time":"%(t)s","remote":"%(h)s","method":"%(m)s","path":"%(U)s","status":%(s)s,"bytes":%(B)s,"ms":%(M)s}'
)


def pre_request(_worker, req):
    """Let the application ask for ``Connection: close`` (cds_services/api.py).

    gunicorn drops a ``Connection`` header the application sets (PEP 3333
    forbids hop-by-hop headers from applications), and after a response it
    drains at most 64 KiB of an unread request body before dropping the
    connection, while its response still said ``keep-alive``: the client's
    next call on that connection then failed. The application knows when it
    left a body unread (refused before reading, too large, malformed), so it
    gets a way to have gunicorn announce the close: ``wsgi.input`` (this
    request's body object) carries the request's ``force_close``.
    """
    req.body.cds_close_connection = req.force_close


def post_worker_init(_worker):
    """Tune the cyclic garbage collector once the app is loaded in the worker.

    A hook call allocates tens of thousands of short-lived, acyclic objects
    (decoded JSON, FHIR models) that reference counting frees on its own; the
    default gen-0 threshold (700) still runs collections that walk every
    long-lived object of the imported libraries. Freezing those and raising
    the threshold cut in-process time by about a fifth at 1,000 and 10,000
    resources (bench/README.md). Cycles are still collected.
    """
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


def when_ready(server):
    """Say where the service listens: with reuse_port the master binds nothing (each worker binds
    ``bind`` itself), so gunicorn's own "Listening at:" line names no address."""
    if server.cfg.reuse_port:
        server.log.info("Workers listen at: %s (each its own socket, SO_REUSEPORT)", ", ".join(server.cfg.bind))
