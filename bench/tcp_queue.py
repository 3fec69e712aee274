"""A queueing TCP relay in front of an Odoo server in workers mode, as
HAProxy's ``maxconn`` on a server is used in front of Odoo.

An Odoo HTTP worker serves one connection at a time and the server listens
with a backlog of 8 connections per worker: more clients at once than that,
and the kernel drops their connections (they retry after 1, 3, 7... seconds,
or fail). A reverse proxy in front queues them instead. This relay listens on
127.0.0.1 with a large backlog and opens at most ``--maxconn`` connections to
Odoo at once; the other connections wait their turn in the relay (their
time in the queue counts in their latency, as it does behind a proxy).

Usage: ``python tcp_queue.py LISTEN_PORT UPSTREAM_PORT MAXCONN`` (started and
stopped by bench/portal_load.py).
"""

import selectors
import signal
import socket
import sys
import threading


def relay(client, upstream_port, slots):
    with slots, client:
        try:
            upstream = socket.create_connection(("127.0.0.1", upstream_port))
        except OSError:
            return
        with upstream, selectors.DefaultSelector() as selector:
            peers = {client: upstream, upstream: client}
            for sock in peers:
                selector.register(sock, selectors.EVENT_READ)
            open_ = 2
            while open_:
                for key, _events in selector.select():
                    try:
                        data = key.fileobj.recv(65536)
                    except OSError:
                        data = b""
                    if data:
                        peers[key.fileobj].sendall(data)
                        continue
                    # One side is done: pass the end of stream on.
                    selector.unregister(key.fileobj)
                    open_ -= 1
                    try:
                        peers[key.fileobj].shutdown(socket.SHUT_WR)
                    except OSError:
                        return


def main():
    listen_port, upstream_port, maxconn = (int(arg) for arg in sys.argv[1:4])
    signal.signal(signal.SIGTERM, lambda *_args: sys.exit(0))
    slots = threading.BoundedSemaphore(maxconn)
    server = socket.create_server(("127.0.0.1", listen_port), backlog=1024)
    while True:
        client, _addr = server.accept()
        threading.Thread(target=relay, args=(client, upstream_port, slots), daemon=True).start()


if __name__ == "__main__":
    main()
