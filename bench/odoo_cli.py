"""Start Odoo's command line (``odoo server ...``) from a file, so that a
server in workers mode can spawn its websocket process (it re-runs
``sys.argv[0]`` with ``gevent``): see procs.py.

The scripts of bench/ drive Odoo through HTTP requests and cron workers; no
client of theirs opens a websocket. The websocket process is therefore not
started: ``gevent`` only waits for the server to stop it. One process less
per server on a small machine, the same on every machine (gevent's monkey
patching also needs a working ``pkg_resources``, which some virtualenvs
lack, and the server would then respawn it in a loop).
"""

import signal
import sys

if __name__ == "__main__":
    if sys.argv[1:2] == ["gevent"]:
        signal.signal(signal.SIGTERM, lambda *_args: sys.exit(0))
        while True:
            signal.pause()
    import odoo.cli

    sys.exit(odoo.cli.main())
