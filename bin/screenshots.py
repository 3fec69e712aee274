"""Take the screenshots of subscription_close/static/description/ with headless
Chromium, from a running demo server (bin/demo):

    bin/demo                                   # in one terminal
    python bin/screenshots.py                  # in another (Odoo's Python)
    python bin/screenshots.py --url http://localhost:8069 --lang it_IT --out /tmp/it

It logs in as the demo users (admin/admin, subscriber/subscriber), opens each
page, opens the popups without submitting them and saves PNG files; only the
language of the two users changes. Needs Chromium on PATH and the
websocket-client package (requirements.txt).
"""

import argparse
import base64
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import websocket

ROOT = Path(__file__).resolve().parent.parent
DESKTOP = (1440, 900)
PHONE = (390, 844)


def rpc(opener, url, path, params):
    request = urllib.request.Request(
        url + path,
        data=json.dumps({"jsonrpc": "2.0", "method": "call", "params": params}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with opener.open(request, timeout=60) as response:
        answer = json.load(response)
    if answer.get("error"):
        raise RuntimeError(answer["error"])
    return answer["result"]


class Session:
    """An Odoo login: its session cookie and a JSON-RPC helper."""

    def __init__(self, url, db, login, password, lang):
        self.url = url
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        credentials = {"db": db, "login": login, "password": password}
        user = rpc(self.opener, url, "/web/session/authenticate", credentials)
        if not self.call("res.lang", "search", [[("code", "=", lang)]]):
            # Not active yet: installed as Settings > Languages does (admin).
            lang_ids = self.call(
                "res.lang", "search", [[("code", "=", lang), ("active", "=", False)]]
            )
            wizard = self.call("base.language.install", "create", [{"lang_ids": lang_ids}])
            self.call("base.language.install", "lang_install", [[wizard]])
        self.call("res.users", "write", [[user["uid"]], {"lang": lang}])
        # Log in again: the new session (and the portal) speaks that language.
        rpc(self.opener, url, "/web/session/authenticate", credentials)
        self.session_id = next(c.value for c in self.jar if c.name == "session_id")

    def call(self, model, method, args, kwargs=None):
        return rpc(
            self.opener,
            self.url,
            f"/web/dataset/call_kw/{model}/{method}",
            {"model": model, "method": method, "args": args, "kwargs": kwargs or {}},
        )


class Browser:
    """Headless Chromium driven through the DevTools protocol."""

    def __init__(self):
        binary = shutil.which("chromium") or shutil.which("chromium-browser")
        if not binary:
            sys.exit("chromium is not on PATH")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.profile = tempfile.mkdtemp(prefix="sc-screenshots-")
        self.process = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                f"--user-data-dir={self.profile}",
                f"--remote-debugging-port={port}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=2) as r:
                    pages = [page for page in json.load(r) if page["type"] == "page"]
                if pages:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            sys.exit("chromium did not start")
        self.ws = websocket.create_connection(
            pages[0]["webSocketDebuggerUrl"], timeout=60, suppress_origin=True
        )
        self.next_id = 0
        self.send("Page.enable")
        self.send("Network.enable")

    def send(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def js(self, expression):
        result = self.send(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if result.get("exceptionDetails"):
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def login(self, url, session):
        self.send("Network.clearBrowserCookies")
        host = url.split("://", 1)[1].split("/")[0].split(":")[0]
        self.send("Network.setCookie", name="session_id", value=session.session_id, domain=host)

    def size(self, width, height):
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=width < 500,
        )

    def goto(self, url, selector, timeout=30):
        self.send("Page.navigate", url=url)
        time.sleep(0.5)
        self.wait(selector, timeout)

    def wait(self, selector, timeout=30):
        deadline = time.time() + timeout
        check = f"!!document.querySelector({json.dumps(selector)})"
        while time.time() < deadline:
            try:
                if self.js(check):
                    time.sleep(0.8)  # let animations end
                    return
            except RuntimeError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{selector} did not show")

    def click(self, selector, then=None):
        self.js(f"document.querySelector({json.dumps(selector)}).click()")
        if then:
            self.wait(then)

    def shot(self, path, full=False):
        """Save the viewport, or the whole page when ``full``."""
        params = {"format": "png"}
        if full:
            width, height = self.js(
                "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
            )
            params.update(
                captureBeyondViewport=True,
                clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            )
        data = self.send("Page.captureScreenshot", **params)["data"]
        path.write_bytes(base64.b64decode(data))
        print(f"saved {path}")

    def close(self):
        self.ws.close()
        self.process.terminate()
        self.process.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://localhost:8069")
    parser.add_argument("--db", default="subscription_close_demo")
    parser.add_argument("--lang", default="en_US")
    parser.add_argument("--out", default=str(ROOT / "subscription_close/static/description"))
    args = parser.parse_args()
    url, out = args.url.rstrip("/"), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    admin = Session(url, args.db, "admin", "admin", args.lang)
    customer = Session(url, args.db, "subscriber", "subscriber", args.lang)

    def ref(xmlid):
        module, name = xmlid.split(".")
        (data,) = admin.call(
            "ir.model.data",
            "search_read",
            [[("module", "=", module), ("name", "=", name)]],
            {"fields": ["res_id"]},
        )
        return data["res_id"]

    running = ref("subscription_close.subscription_progress_demo")
    closed = ref("subscription_close.subscription_closed_demo")
    yearly = ref("subscription_close.subscription_yearly_demo")
    reason = ref("subscription_close.close_reason_too_expensive")

    browser = Browser()
    try:
        browser.size(*DESKTOP)
        browser.login(url, admin)
        action = f"{url}/odoo/action-subscription_close.sale_subscription_action"
        browser.goto(f"{action}/{running}", ".o_form_view .o_statusbar_buttons")
        browser.click(
            "button[name='action_open_close_wizard']",
            ".modal .o_field_widget[name='close_reason_id']",
        )
        browser.shot(out / "backend_close_popup.png")
        browser.goto(f"{action}/{closed}", ".o_form_view .ribbon")
        browser.wait(".o-mail-Message")
        browser.shot(out / "backend_churned.png")
        browser.goto(f"{url}/odoo/subscription-churn", ".o_graph_view canvas")
        browser.click(".o_switch_view.o_pivot", ".o_pivot table")
        browser.shot(out / "backend_churn_report.png")
        browser.goto(
            f"{url}/odoo/action-subscription_close.sale_order_close_reason_action/{reason}",
            ".o_form_view .o_notebook",
        )
        browser.shot(out / "backend_close_reason.png")
        browser.goto(
            f"{url}/odoo/action-subscription_close.sale_order_close_reason_action",
            ".o_list_view .o_data_row",
        )
        browser.shot(out / "backend_close_reasons.png")

        browser.login(url, customer)
        browser.goto(f"{url}/my/subscriptions", ".o_subscription_row")
        browser.shot(out / "portal_subscriptions.png")
        browser.goto(f"{url}/my/orders/{running}", "#o_subscription_close_button")
        browser.click("#o_subscription_close_button", "#modal_subscription_close.show")
        browser.click(f"#subscription_close_reason_{reason}", ".o_subscription_retention_keep")
        browser.shot(out / "portal_close_offer.png")
        browser.goto(f"{url}/my/orders/{yearly}", "#subscription_contact")
        browser.shot(out / "portal_not_closable.png")

        browser.size(*PHONE)
        browser.goto(f"{url}/my/subscriptions", ".o_subscription_row")
        browser.shot(out / "portal_subscriptions_phone.png")
        browser.goto(f"{url}/my/orders/{closed}", "#subscription_info")
        browser.shot(out / "portal_closed_phone.png", full=True)
    finally:
        browser.close()


if __name__ == "__main__":
    main()
