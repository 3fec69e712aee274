"""Portal load test: customers close their subscriptions through the real
portal of an Odoo server in workers mode.

1. A throwaway database with the addon; through the ORM: ``--customers``
   portal customers (200), each with one In Progress subscription on a plan
   that customers may close, and ``--bystanders`` customers (10) whose
   subscription nobody may close.
2. One Odoo server, ``--workers=4`` (no cron worker: the load is the
   portal's), loopback only, its emails to an SMTP sink on loopback, behind
   a queueing relay (bench/tcp_queue.py: at most ``--maxconn`` = 4
   connections to Odoo at once, the others wait in the relay, as behind
   HAProxy's ``maxconn``; without it, 50 clients at once overflow the 32
   connections Odoo's 4 workers queue and the kernel drops some).
3. ``--clients`` threads (50), started over ``--ramp-up`` seconds (10), share
   the customers, without pause between requests; for each customer, with
   its own HTTP session (cookies) and one connection per request, as a
   browser behind a reverse proxy: ``GET /web/login`` (CSRF token
   parsed from the page), ``POST /web/login``, ``GET /my/subscriptions``,
   the subscription's page (link parsed from the list), ``POST`` of the
   close form parsed from that page (its action, CSRF token, access token,
   first close reason offered), then the page it redirects to. The clients
   of the first ``--attackers`` customers (5) then replay the same POST and
   post the close form for a bystander's subscription and for another
   customer's.
4. It reports requests per second, p50 / p95 / p99 latency per route, HTTP
   errors (any status but the one expected; must be 0) and checks in the
   database: every subscription closed exactly once (Churned, one closing
   message, written by its own customer), the bystanders' subscriptions
   untouched, and no WARNING or ERROR in the server's log.

Run it with ``bench/portal_load`` (see ``--help``); it is not part of
``bin/test``. Only the Python standard library and ``requests`` (a
dependency of Odoo) are used.
"""

import argparse
import contextlib
import functools
import html
import os
import queue
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from urllib.parse import urljoin

from procs import (
    Check,
    OdooServer,
    SmtpSink,
    free_port,
    log_checks,
    odoo_env,
    run_script,
    servers_stopped,
)

CSRF = re.compile(r'name="csrf_token"\s+value="([^"]+)"')
HIDDEN = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)"')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--bystanders", type=int, default=10)
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients")
    parser.add_argument(
        "--ramp-up", type=float, default=10, help="seconds over which the clients start"
    )
    parser.add_argument("--attackers", type=int, default=5, help="clients that replay and forge")
    parser.add_argument("--workers", type=int, default=4, help="Odoo HTTP workers")
    parser.add_argument(
        "--maxconn",
        type=int,
        default=None,
        help="connections the queueing relay opens to Odoo at once (default: --workers)",
    )
    parser.add_argument("--keep-db", action="store_true", default=bool(os.environ.get("KEEP_DB")))
    return parser.parse_args()


# ----------------------------------------------------------------------
# Setup
# ----------------------------------------------------------------------


def build(env, customers, bystanders):
    """Customers with their portal user (password = login) and one In
    Progress subscription each; return ``[(login, order id, partner id)]``
    for the customers and the bystanders."""
    from odoo.fields import Command

    closable = env["sale.subscription.plan"].create(
        {"name": "Load monthly", "billing_period_unit": "month", "user_closable": True}
    )
    locked = env["sale.subscription.plan"].create(
        {"name": "Load yearly", "billing_period_unit": "year", "user_closable": False}
    )
    product = env["product.product"].create(
        {"name": "Load subscription", "type": "service", "recurring_invoice": True}
    )
    portal = env.ref("base.group_portal")
    people = []
    for kind, count, plan in (("load", customers, closable), ("bystander", bystanders, locked)):
        partners = env["res.partner"].create(
            [{"name": f"{kind} {i}", "email": f"{kind}.{i}@example.com"} for i in range(count)]
        )
        env["res.users"].with_context(no_reset_password=True).create(
            [
                {
                    "login": f"{kind}{i}",
                    "password": f"{kind}{i}",
                    "partner_id": partner.id,
                    "group_ids": [Command.set(portal.ids)],
                }
                for i, partner in enumerate(partners)
            ]
        )
        orders = env["sale.order"].create(
            [
                {
                    "partner_id": partner.id,
                    "plan_id": plan.id,
                    "order_line": [Command.create({"product_id": product.id})],
                }
                for partner in partners
            ]
        )
        orders.action_confirm()
        people.append(
            [(f"{kind}{i}", order.id, order.partner_id.id) for i, order in enumerate(orders)]
        )
    env.cr.commit()
    return people


# ----------------------------------------------------------------------
# Clients
# ----------------------------------------------------------------------


class Recorder:
    """Latencies per route, and the errors."""

    def __init__(self):
        self.start = time.monotonic()
        self.lock = threading.Lock()
        self.latencies = defaultdict(list)
        self.errors = []
        self.outcomes = defaultdict(int)

    def request(self, session, route, method, url, expect, **kwargs):
        start = time.monotonic()
        try:
            response = session.request(method, url, allow_redirects=False, timeout=120, **kwargs)
        except Exception as error:  # noqa: BLE001 - counted as an HTTP error
            with self.lock:
                self.errors.append(
                    f"at {start - self.start:.0f}s, after {time.monotonic() - start:.0f}s, "
                    f"{route}: {error!r}"
                )
            return None
        elapsed = time.monotonic() - start
        with self.lock:
            self.latencies[route].append(elapsed)
            if response.status_code not in expect:
                self.errors.append(
                    f"at {start - self.start:.0f}s, {route}: HTTP {response.status_code} ({url})"
                )
        return response

    def outcome(self, key):
        with self.lock:
            self.outcomes[key] += 1


def close_form(page):
    """``(action, fields)`` of the close form of a subscription page: its
    hidden fields and the first close reason offered without a retention
    offer."""
    start = page.index('id="subscription_close_form"')
    form = page[page.rindex("<form", 0, start) : page.index("</form>", start)]
    action = html.unescape(re.search(r'action="([^"]+)"', form).group(1))
    fields = {name: html.unescape(value) for name, value in HIDDEN.findall(form)}
    reasons = re.findall(r'<input[^>]*name="close_reason_id"[^>]*>', form)
    reason = next(tag for tag in reasons if "data-retention" not in tag)
    fields["close_reason_id"] = re.search(r'value="(\d+)"', reason).group(1)
    return action, fields


def customer_journey(base, login, order_id, record, victims, close=True):
    """One customer, as a browser: log in, list, open, close (unless not
    ``close``); then, when ``victims`` are given, replay the close and post
    the form for each of the ``victims`` (order ids of other customers)."""
    import requests

    session = requests.Session()
    # One connection per request, as a reverse proxy in front of Odoo's
    # workers does: a worker serves one connection at a time, and would wait
    # for the next request of a kept-alive one.
    session.headers["Connection"] = "close"
    response = record.request(session, "GET /web/login", "GET", f"{base}/web/login", {200})
    if response is None:
        return
    token = CSRF.search(response.text).group(1)
    response = record.request(
        session,
        "POST /web/login",
        "POST",
        f"{base}/web/login",
        {303},
        data={"login": login, "password": login, "csrf_token": token, "redirect": ""},
    )
    if response is None or response.status_code != 303:
        return
    response = record.request(
        session, "GET /my/subscriptions", "GET", f"{base}/my/subscriptions", {200}
    )
    if response is None:
        return
    links = set(re.findall(r'href="(/my/orders/(\d+)[^"]*)"', response.text))
    link = next((html.unescape(url) for url, found in links if int(found) == order_id), None)
    if not link:
        with record.lock:
            record.errors.append(f"{login}: subscription {order_id} not listed")
        return
    response = record.request(session, "GET /my/orders/<id> (page)", "GET", f"{base}{link}", {200})
    if response is None or not close:
        return
    action, fields = close_form(response.text)
    response = record.request(
        session, "POST /my/subscriptions/<id>/close", "POST", f"{base}{action}", {303}, data=fields
    )
    if response is None:
        return
    location = urljoin(base, response.headers.get("Location", ""))
    record.outcome("closed" if "subscription_message=closed" in location else location)
    record.request(session, "GET /my/orders/<id> (after close)", "GET", location, {200})
    if not victims:
        return
    # The same POST again: refused, the page says it is already closed.
    response = record.request(
        session, "replayed POST close", "POST", f"{base}{action}", {303}, data=fields
    )
    if response is not None and "already_closed" in response.headers.get("Location", ""):
        record.outcome("replay refused: already closed")
    # The form posted for another customer's subscription: refused (403).
    for victim in victims:
        forged = dict(fields, access_token="")
        response = record.request(
            session,
            "forged POST close (other customer)",
            "POST",
            f"{base}/my/subscriptions/{victim}/close",
            {403},
            data=forged,
        )
        if response is not None and response.status_code == 403:
            record.outcome("forged post refused (403)")


def run_clients(base, customers, bystanders, args, record):
    work = queue.Queue()
    for index, (login, order_id, _partner) in enumerate(customers):
        victims = []
        if index < args.attackers:
            victims = [
                bystanders[index % len(bystanders)][1],
                customers[(index + len(customers) // 2) % len(customers)][1],
            ]
        work.put((login, order_id, victims))

    def client(delay):
        time.sleep(delay)
        while True:
            try:
                login, order_id, victims = work.get_nowait()
            except queue.Empty:
                return
            try:
                customer_journey(base, login, order_id, record, victims)
            except Exception as error:  # noqa: BLE001 - counted as an error
                with record.lock:
                    record.errors.append(f"{login}: {error!r}")

    step = args.ramp_up / args.clients
    threads = [threading.Thread(target=client, args=(i * step,)) for i in range(args.clients)]
    start = record.start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - start


# ----------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------


def database_checks(env, customers, bystanders, messages_before):
    ids = [order_id for _login, order_id, _partner in customers]
    field = env["ir.model.fields"]._get("sale.order", "subscription_state")
    env.cr.execute(
        """
        SELECT o.id, o.subscription_state, o.partner_id,
               array_remove(array_agg(m.author_id), NULL)
          FROM sale_order o
          LEFT JOIN mail_message m
            ON m.model = 'sale.order' AND m.res_id = o.id
           AND EXISTS (SELECT 1 FROM mail_tracking_value t
                        WHERE t.mail_message_id = m.id AND t.field_id = %s
                          AND t.new_value_char = 'Churned')
         WHERE o.id = ANY(%s)
         GROUP BY o.id
        """,
        (field.id, ids),
    )
    rows = env.cr.fetchall()
    closed_once = sum(
        1 for _id, state, _p, authors in rows if state == "6_churn" and len(authors) == 1
    )
    by_owner = sum(1 for _id, _state, partner, authors in rows if authors == [partner])
    bystander_ids = [order_id for _login, order_id, _partner in bystanders]
    env.cr.execute(
        """
        SELECT count(*) FILTER (WHERE subscription_state = '3_progress' AND end_date IS NULL)
          FROM sale_order WHERE id = ANY(%s)
        """,
        (bystander_ids,),
    )
    intact = env.cr.fetchone()[0]
    messages_after = message_counts(env, bystander_ids)
    return [
        Check(
            "every subscription closed exactly once",
            closed_once == len(ids),
            f"{closed_once} of {len(ids)} Churned with exactly one closing message",
        ),
        Check(
            "each closed by its own customer",
            by_owner == len(ids),
            f"{by_owner} of {len(ids)} closing messages written by the order's customer",
        ),
        Check(
            "other customers' subscriptions untouched",
            intact == len(bystander_ids) and messages_after == messages_before,
            f"{intact} of {len(bystander_ids)} bystanders still In Progress, "
            f"no new message: {messages_after == messages_before}",
        ),
    ]


def message_counts(env, ids):
    env.cr.execute(
        "SELECT res_id, count(*) FROM mail_message WHERE model = 'sale.order' "
        "AND res_id = ANY(%s) GROUP BY res_id",
        (ids,),
    )
    return dict(env.cr.fetchall())


def percentile(values, fraction):
    values = sorted(values)
    return values[min(len(values) - 1, round(fraction * (len(values) - 1)))]


SERVER_ROUTES = [
    ("GET", re.compile(r"/web/login$"), "GET /web/login"),
    ("POST", re.compile(r"/web/login$"), "POST /web/login"),
    ("GET", re.compile(r"/my/subscriptions$"), "GET /my/subscriptions"),
    ("GET", re.compile(r"/my/orders/\d+(\?|$)"), "GET /my/orders/<id> (before/after)"),
    # Replayed and forged POSTs included.
    ("POST", re.compile(r"/my/subscriptions/\d+/close$"), "POST /my/subscriptions/<id>/close"),
]
WERKZEUG = re.compile(r'"(GET|POST) (\S+) HTTP/[\d.]+" (\d+) - (\d+) ([\d.]+) ([\d.]+)')


def server_times(log_path, since):
    """``{route: [seconds]}`` the server spent on each request (SQL and
    Python, without the time queued before), from its log lines logged at or
    after ``since`` (a ``%Y-%m-%d %H:%M:%S`` string)."""
    times = defaultdict(list)
    with open(log_path, errors="replace") as log:
        for line in log:
            match = WERKZEUG.search(line)
            if not match or line[:19] < since:
                continue
            method, path, _status, _queries, sql, other = match.groups()
            for route_method, pattern, route in SERVER_ROUTES:
                if method == route_method and pattern.search(path):
                    times[route].append(float(sql) + float(other))
                    break
    return times


def report(record, elapsed):
    total = sum(len(v) for v in record.latencies.values())
    print(f"\n  {total} requests in {elapsed:.1f}s: {total / elapsed:.1f} requests/s")
    print(f"  {'route':40} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for route, values in record.latencies.items():
        cells = [percentile(values, f) * 1000 for f in (0.5, 0.95, 0.99)] + [max(values) * 1000]
        print(f"  {route:40} {len(values):5d} " + " ".join(f"{c:8.0f}" for c in cells))
    all_values = [v for values in record.latencies.values() for v in values]
    print(
        f"  {'all':40} {len(all_values):5d} "
        f"{statistics.median(all_values) * 1000:8.0f} "
        f"{percentile(all_values, 0.95) * 1000:8.0f} {percentile(all_values, 0.99) * 1000:8.0f}"
    )
    for key, count in sorted(record.outcomes.items()):
        print(f"  outcome: {key} x{count}")
    print(f"  HTTP errors: {len(record.errors)}")
    for error in record.errors[:10]:
        print(f"    {error}")


@contextlib.contextmanager
def queueing_relay(upstream_port, maxconn):
    """Start bench/tcp_queue.py in front of the Odoo server listening on
    ``upstream_port`` (at most ``maxconn`` connections to it at once, the
    others queued, as a reverse proxy does); yield its base URL and stop it
    on exit."""
    port = free_port()
    relay = subprocess.Popen(
        [
            sys.executable,
            os.path.join(os.path.dirname(os.path.abspath(__file__)), "tcp_queue.py"),
            str(port),
            str(upstream_port),
            str(maxconn),
        ],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if relay.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        relay.terminate()
        try:
            relay.wait(10)
        except subprocess.TimeoutExpired:
            relay.kill()
            relay.wait()


def run(args, db, log_dir, started, checks):
    """The test on the database ``db`` (see :func:`procs.run_script`)."""
    with odoo_env(db) as env:
        customers, bystanders = build(env, args.customers, args.bystanders)
        bystander_messages = message_counts(env, [o for _l, o, _p in bystanders])
    print(
        f"  setup: {len(customers)} customers, {len(bystanders)} bystanders "
        f"in {time.monotonic() - started:.0f}s",
        flush=True,
    )
    with SmtpSink() as sink, contextlib.ExitStack() as stack:
        server = OdooServer(
            "load", db, log_dir, workers=args.workers, cron_threads=0, smtp_port=sink.port
        )
        with servers_stopped([server]):
            server.start()
            relay = queueing_relay(server.port, args.maxconn or args.workers)
            base = stack.enter_context(relay)
            # Warm-up, not measured: one page of each kind per worker.
            warm = Recorder()
            warm_threads = [
                threading.Thread(
                    target=customer_journey,
                    args=(base, login, order_id, warm, []),
                    kwargs={"close": False},
                )
                for login, order_id, _partner in bystanders[: args.workers]
            ]
            for thread in warm_threads:
                thread.start()
            for thread in warm_threads:
                thread.join()
            record = Recorder()
            run_start = time.strftime("%Y-%m-%d %H:%M:%S")
            print(f"  {args.clients} clients on {base} -> {server.url} ...", flush=True)
            elapsed = run_clients(base, customers, bystanders, args, record)
        emails = len(sink.outbox())
    report(record, elapsed)
    print("\n  time spent by the server per request (from its log, queueing excluded):")
    for route, values in server_times(server.log, run_start).items():
        cells = [percentile(values, f) * 1000 for f in (0.5, 0.95, 0.99)]
        print(f"  {route:40} {len(values):5d} " + " ".join(f"{c:8.0f}" for c in cells))
    print(f"  emails sent during the run: {emails}\n")
    checks.append(Check("no HTTP error", not record.errors, f"{len(record.errors)} errors"))
    attackers = min(args.attackers, len(customers))
    checks.append(
        Check(
            "replayed and forged POSTs refused",
            record.outcomes["replay refused: already closed"] == attackers
            and record.outcomes["forged post refused (403)"] == 2 * attackers,
            f"{record.outcomes['replay refused: already closed']} replays said already "
            f"closed, {record.outcomes['forged post refused (403)']} forged posts got 403",
        )
    )
    with odoo_env(db) as env:
        checks += database_checks(env, customers, bystanders, bystander_messages)
    checks += log_checks([server])


def main():
    args = parse_args()
    return run_script("Portal load test", "portal_load", args.keep_db, functools.partial(run, args))


if __name__ == "__main__":
    sys.exit(main())
