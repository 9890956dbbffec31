"""The official Python `pusher` SDK against a real sonde-relay.

Starts the relay on a free port, runs every check, prints `N passed, N failed` and exits
non-zero when any check failed. Delivery is observed with a raw websocket client.
"""

import base64
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import nacl.secret
import pusher
import pusher.errors
import pusher.http
import websocket

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
RELAY_BIN = os.environ.get("SONDE_RELAY_BIN", os.path.join(REPO, "target", "debug", "sonde-relay"))
MASTER_KEY = base64.b64encode(bytes([7] * 32)).decode()
TIMEOUT = 5.0

MAIN = {"id": "1001", "key": "key1001", "secret": "secret1001"}
COUNTED = {"id": "1002", "key": "key1002", "secret": "secret1002", "subscription_count": True}
DISABLED = {"id": "1003", "key": "key1003", "secret": "secret1003", "enabled": False}
# Webhooks to the receiver below; its targets are written into the config by Relay.
HOOKED = {"id": "1004", "key": "key1004", "secret": "secret1004", "client_events": True}
HOOK_TYPES = ["channel_occupied", "channel_vacated", "member_added", "member_removed", "client_event", "cache_miss"]


# --- the relay --------------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# What an app given with --app gets; apps in the config file are written out in full.
APP_DEFAULTS = {
    "enabled": True, "client_events": True, "user_authentication": True, "subscription_count": False,
    "max_connections": 0, "max_presence_members": 100, "max_presence_member_info_bytes": 2048,
    "max_payload_bytes": 10240, "max_event_name_len": 200, "max_channels_per_event": 100,
    "max_batch_events": 10, "client_events_per_second": 10, "cache_ttl_s": 1800,
}


def toml_app(app, webhooks=()):
    lines = ["[[apps]]"]
    for k, v in dict(APP_DEFAULTS, **app).items():
        lines.append("%s = %s" % (k, json.dumps(v)))
    for hook in webhooks:
        lines.append("[[apps.webhooks]]")
        for k, v in hook.items():
            lines.append("%s = %s" % (k, json.dumps(v)))
    return "\n".join(lines) + "\n"


# --- a webhook receiver -----------------------------------------------------------------


class Receiver:
    """An HTTP server that checks every webhook with the SDK's `validate_webhook`; https with
    `tls`, an `ssl.SSLContext` holding the server's certificate."""

    def __init__(self, app, tls=None):
        self.sdk = pusher.Pusher(app_id=app["id"], key=app["key"], secret=app["secret"], host="127.0.0.1", ssl=False)
        self.requests = []
        self.lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                checked = receiver.sdk.validate_webhook(
                    key=self.headers.get("X-Pusher-Key"), signature=self.headers.get("X-Pusher-Signature"), body=body)
                with receiver.lock:
                    receiver.requests.append({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body, "checked": checked})
                    receiver.lock.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.url = "%s://127.0.0.1:%d/webhooks" % ("https" if tls else "http", self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self):
        with self.lock:
            return [e for r in self.requests if r["checked"] for e in r["checked"]["events"]]

    def wait_for(self, match, timeout=TIMEOUT):
        deadline = time.time() + timeout
        with self.lock:
            while True:
                found = [e for r in self.requests if r["checked"] for e in r["checked"]["events"] if match(e)]
                if found:
                    return found[0]
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError("no matching webhook within %ss (got: %s)" % (timeout, [(e["name"], e.get("channel")) for e in self.events()]))
                self.lock.wait(left)

    def invalid(self):
        with self.lock:
            return [r for r in self.requests if not r["checked"]]

    def stop(self):
        self.server.shutdown()


class Relay:
    """A sonde-relay process: `--app` for the plain app, a TOML file for the others."""

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="sonde-py-")
        self.receiver = Receiver(HOOKED)
        config = os.path.join(self.dir, "relay.toml")
        hooks = [{"url": self.receiver.url, "event_types": HOOK_TYPES}]
        with open(config, "w") as f:
            f.write("\n".join([toml_app(COUNTED), toml_app(DISABLED), toml_app(HOOKED, hooks)]))
        args = [
            RELAY_BIN,
            "--bind", "127.0.0.1:%d" % self.port,
            "--app", "%s:%s:%s" % (MAIN["id"], MAIN["key"], MAIN["secret"]),
            "--config", config,
        ]
        self.log = open(os.path.join(self.dir, "relay.log"), "w+")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_ready()

    def wait_ready(self, timeout=20.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("sonde-relay exited with %s:\n%s" % (self.proc.returncode, self.logs()))
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % self.port, timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("sonde-relay not ready within %ss:\n%s" % (timeout, self.logs()))

    def logs(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-4000:]

    def stop(self):
        self.receiver.stop()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def sdk(self, app=MAIN, **overrides):
        options = dict(
            app_id=app["id"], key=app["key"], secret=app["secret"],
            host="127.0.0.1", port=self.port, ssl=False, timeout=5,
            encryption_master_key_base64=MASTER_KEY,
        )
        options.update(overrides)
        return pusher.Pusher(**options)

    def socket(self, app=MAIN):
        return Socket("ws://127.0.0.1:%d/app/%s?protocol=7&client=py&version=1.0&flash=false" % (self.port, app["key"]))


# --- a raw Pusher-protocol websocket -------------------------------------------------------


class Socket:
    def __init__(self, url, **options):
        self.ws = websocket.create_connection(url, timeout=TIMEOUT, **options)
        self.frames = []
        self.unread = []
        self.closed = None
        established = self.next(lambda f: f["event"] == "pusher:connection_established")
        self.socket_id = established["data"]["socket_id"]

    def _read(self, deadline):
        self.ws.settimeout(max(0.01, deadline - time.time()))
        try:
            op, payload = self.ws.recv_data(control_frame=False)
        except websocket.WebSocketTimeoutException:
            return None
        except websocket.WebSocketConnectionClosedException:
            self.closed = self.closed or -1
            return None
        if op == websocket.ABNF.OPCODE_CLOSE:
            self.closed = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            return None
        text = payload.decode()
        frame = json.loads(text)
        frame["raw"] = text
        if isinstance(frame.get("data"), str):
            try:
                frame["data"] = json.loads(frame["data"])
            except ValueError:
                pass
        self.frames.append(frame)
        return frame

    def next(self, match, timeout=TIMEOUT):
        for i, f in enumerate(self.unread):
            if match(f):
                return self.unread.pop(i)
        deadline = time.time() + timeout
        while time.time() < deadline and self.closed is None:
            f = self._read(deadline)
            if f is None:
                continue
            if match(f):
                return f
            self.unread.append(f)
        raise AssertionError("no matching frame within %ss (closed: %s; frames: %s)"
                             % (timeout, self.closed, [f["event"] for f in self.frames]))

    def event(self, name, channel=None, timeout=TIMEOUT):
        return self.next(lambda f: f["event"] == name and (channel is None or f.get("channel") == channel), timeout)

    def send(self, frame):
        self.ws.send(json.dumps(frame))

    def join(self, channel, auth=None):
        data = {"channel": channel}
        if auth:
            data.update({k: v for k, v in auth.items() if k in ("auth", "channel_data")})
        self.send({"event": "pusher:subscribe", "data": data})
        frame = self.next(lambda f: f.get("channel") == channel or f["event"] == "pusher:error")
        assert frame["event"] == "pusher_internal:subscription_succeeded", frame["raw"]
        return frame

    def round_trip(self):
        self.send({"event": "pusher:ping", "data": {}})
        self.event("pusher:pong")

    def seen(self, name):
        return [f for f in self.frames if f["event"] == name]

    def wait_closed(self, timeout=TIMEOUT):
        deadline = time.time() + timeout
        while self.closed is None and time.time() < deadline:
            f = self._read(deadline)
            if f is not None:
                self.unread.append(f)
        assert self.closed is not None, "socket still open after %ss" % timeout
        return self.closed

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass


# --- checks ---------------------------------------------------------------------------------

CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def expect_error(call, error_type, status=None):
    try:
        call()
    except error_type as e:
        if status is not None:
            assert str(e).startswith("%d:" % status), "expected HTTP %d, got %s" % (status, e)
        return e
    raise AssertionError("expected %s" % error_type.__name__)


@check
def trigger_delivers_the_exact_data(relay, sockets):
    s = sockets(relay.socket())
    s.join("py-news")
    relay.sdk().trigger("py-news", "headline", {"title": "hello", "n": 1})
    frame = s.event("headline", "py-news")
    assert json.loads(frame["raw"])["data"] == json.dumps({"title": "hello", "n": 1}), frame["raw"]


@check
def trigger_returns_a_json_object(relay, sockets):
    result = relay.sdk().trigger("py-nobody", "ev", {})
    assert isinstance(result, dict), result


@check
def trigger_to_several_channels_excludes_the_socket_id(relay, sockets):
    sender, other = sockets(relay.socket()), sockets(relay.socket())
    for s in (sender, other):
        s.join("py-multi-a")
        s.join("py-multi-b")
    relay.sdk().trigger(["py-multi-a", "py-multi-b"], "update", {"v": 1}, socket_id=sender.socket_id)
    assert other.event("update", "py-multi-a")["data"] == {"v": 1}
    assert other.event("update", "py-multi-b")["data"] == {"v": 1}
    relay.sdk().trigger("py-multi-a", "control", {})
    sender.event("control", "py-multi-a")
    assert sender.seen("update") == [], "the excluded socket got the event"


@check
def private_channel_with_sdk_authentication(relay, sockets):
    s = sockets(relay.socket())
    s.join("private-py-orders", relay.sdk().authenticate("private-py-orders", s.socket_id))
    relay.sdk().trigger("private-py-orders", "created", {"id": 7})
    assert s.event("created", "private-py-orders")["data"] == {"id": 7}


@check
def bad_signature_refuses_only_that_subscription(relay, sockets):
    s = sockets(relay.socket())
    auth = relay.sdk(secret="wrong").authenticate("private-py-bad", s.socket_id)
    s.send({"event": "pusher:subscribe", "data": {"channel": "private-py-bad", "auth": auth["auth"]}})
    err = s.event("pusher:subscription_error", "private-py-bad")
    assert err["data"]["type"] == "AuthError", err["raw"]
    s.join("py-after-bad")
    relay.sdk().trigger("py-after-bad", "ok", {})
    s.event("ok", "py-after-bad")


@check
def presence_users_and_user_count(relay, sockets):
    sdk = relay.sdk()
    channel = "presence-py-room"
    for user in ("ann", "ann", "ben"):
        s = sockets(relay.socket())
        s.join(channel, sdk.authenticate(channel, s.socket_id, {"user_id": user, "user_info": {"name": user}}))
    users = sdk.users_info(channel)
    assert sorted(u["id"] for u in users["users"]) == ["ann", "ben"], users
    info = sdk.channel_info(channel, ["user_count"])
    assert info == {"occupied": True, "user_count": 2}, info


@check
def channels_list_filtered_by_prefix_with_user_count(relay, sockets):
    sdk = relay.sdk()
    for channel, user in (("presence-py-list-a", "x"), ("presence-py-list-a", "y"), ("presence-py-list-b", "z")):
        s = sockets(relay.socket())
        s.join(channel, sdk.authenticate(channel, s.socket_id, {"user_id": user}))
    s = sockets(relay.socket())
    s.join("py-list-public")
    result = sdk.channels_info("presence-py-list", ["user_count"])
    assert result == {"channels": {"presence-py-list-a": {"user_count": 2}, "presence-py-list-b": {"user_count": 1}}}, result
    everything = sdk.channels_info()
    for name in ("presence-py-list-a", "presence-py-list-b", "py-list-public"):
        assert name in everything["channels"], everything


@check
def channel_info_occupied_and_subscription_count(relay, sockets):
    sdk = relay.sdk(COUNTED)
    for _ in range(2):
        sockets(relay.socket(COUNTED)).join("py-counted")
    info = sdk.channel_info("py-counted", ["subscription_count"])
    assert info == {"occupied": True, "subscription_count": 2}, info
    empty = sdk.channel_info("py-unoccupied")
    assert empty["occupied"] is False, empty


@check
def get_requests_carry_body_md5_of_the_empty_body(relay, sockets):
    sdk = relay.sdk()
    request = sdk._pusher_client.channels_info.make_request()
    assert request.query_params["body_md5"] == hashlib.md5(b"").hexdigest()
    result = sdk._pusher_client.http.send_request(request)
    assert "channels" in result, result


@check
def trigger_batch_delivers_every_item(relay, sockets):
    s = sockets(relay.socket())
    s.join("py-batch-a")
    s.join("py-batch-b")
    relay.sdk().trigger_batch([
        {"channel": "py-batch-a", "name": "first", "data": {"n": 1}},
        {"channel": "py-batch-b", "name": "second", "data": {"n": 2}},
    ])
    assert s.event("first", "py-batch-a")["data"] == {"n": 1}
    assert s.event("second", "py-batch-b")["data"] == {"n": 2}


@check
def encrypted_channel_relays_ciphertext_only(relay, sockets):
    sdk = relay.sdk()
    channel = "private-encrypted-py-vault"
    s = sockets(relay.socket())
    auth = sdk.authenticate(channel, s.socket_id)
    assert "shared_secret" in auth
    s.join(channel, auth)
    sdk.trigger(channel, "sealed", {"pin": "plaintext-marker"})
    frame = s.event("sealed", channel)
    assert "plaintext-marker" not in frame["raw"], frame["raw"]
    box = nacl.secret.SecretBox(base64.b64decode(auth["shared_secret"]))
    plain = box.decrypt(base64.b64decode(frame["data"]["ciphertext"]), base64.b64decode(frame["data"]["nonce"]))
    assert json.loads(plain) == {"pin": "plaintext-marker"}, plain


def signed_in_socket(relay, sockets, user_id):
    s = sockets(relay.socket())
    auth = relay.sdk().authenticate_user(s.socket_id, {"id": user_id, "user_info": {"name": user_id}})
    s.send({"event": "pusher:signin", "data": auth})
    ok = s.event("pusher:signin_success")
    assert ok["data"]["user_data"] == auth["user_data"], ok["raw"]
    # pusher-js subscribes to its server-to-user channel after signin; do the same.
    s.send({"event": "pusher:subscribe", "data": {"channel": "#server-to-user-%s" % user_id, "auth": ""}})
    s.round_trip()
    return s


@check
def send_to_user_reaches_only_that_user(relay, sockets):
    s = signed_in_socket(relay, sockets, "py-user")
    other = signed_in_socket(relay, sockets, "py-other")
    relay.sdk().send_to_user("py-user", "note", {"text": "hi"})
    note = s.event("note")
    assert note["channel"] == "#server-to-user-py-user" and note["data"] == {"text": "hi"}, note["raw"]
    relay.sdk().send_to_user("py-other", "control", {})
    other.event("control")
    assert other.seen("note") == [], "another user got the note"


@check
def terminate_user_connections(relay, sockets):
    # pusher 3.3.4's terminate_user_connections() posts to /users/{id}/terminate_connections,
    # without the /apps/{app_id} prefix every other method uses; the relay accepts that path too
    # (the app is the one whose key signed it), so the SDK call works unchanged.
    sdk = relay.sdk()
    s = signed_in_socket(relay, sockets, "py-leaver")
    bystander = signed_in_socket(relay, sockets, "py-stayer")
    assert sdk.terminate_user_connections("py-leaver") == {}
    code = s.wait_closed()
    assert 4000 <= code < 4100, "closed with %s" % code
    bystander.round_trip()
    # The documented path works as well.
    other = signed_in_socket(relay, sockets, "py-leaver2")
    path = "/apps/%s/users/py-leaver2/terminate_connections" % MAIN["id"]
    request = pusher.http.Request(sdk._pusher_client, pusher.http.POST, path, {})
    assert sdk._pusher_client.http.send_request(request) == {}
    code = other.wait_closed()
    assert 4000 <= code < 4100, "closed with %s" % code


@check
def wrong_secret_is_401(relay, sockets):
    e = expect_error(lambda: relay.sdk(secret="not-the-secret").trigger("py-x", "ev", {}), pusher.errors.PusherBadAuth)
    assert "error" in json.loads(str(e)), str(e)


@check
def unknown_app_is_404(relay, sockets):
    expect_error(lambda: relay.sdk(app_id="999999").channels_info(), pusher.errors.PusherBadStatus, 404)


@check
def disabled_app_is_403(relay, sockets):
    expect_error(lambda: relay.sdk(DISABLED).trigger("py-x", "ev", {}), pusher.errors.PusherForbidden)


@check
def oversized_payload_is_413(relay, sockets):
    expect_error(lambda: relay.sdk().trigger("py-x", "ev", "x" * (10 * 1024 + 1)), pusher.errors.PusherBadStatus, 413)


@check
def user_count_without_presence_prefix_is_400(relay, sockets):
    expect_error(lambda: relay.sdk().channels_info(attributes=["user_count"]), pusher.errors.PusherBadRequest)


@check
def webhooks_pass_validate_webhook(relay, sockets):
    sdk = relay.sdk(HOOKED)
    room = "presence-py-hooks"
    watcher = sockets(relay.socket(HOOKED))
    watcher.join(room, sdk.authenticate(room, watcher.socket_id, {"user_id": "ann"}))
    talker = sockets(relay.socket(HOOKED))
    talker.join(room, sdk.authenticate(room, talker.socket_id, {"user_id": "ben"}))
    talker.send({"event": "client-hello", "channel": room, "data": {"n": 1}})
    watcher.event("client-hello", room)
    event = relay.receiver.wait_for(lambda e: e["name"] == "client_event" and e["channel"] == room)
    assert event == {"name": "client_event", "channel": room, "event": "client-hello", "data": json.dumps({"n": 1}),
                     "socket_id": talker.socket_id, "user_id": "ben"}, event
    talker.close()
    relay.receiver.wait_for(lambda e: e["name"] == "member_removed" and e["channel"] == room and e["user_id"] == "ben")
    watcher.close()
    relay.receiver.wait_for(lambda e: e["name"] == "channel_vacated" and e["channel"] == room)
    names = [(e["name"], e.get("user_id")) for e in relay.receiver.events() if e.get("channel") == room]
    assert names == [("channel_occupied", None), ("member_added", "ann"), ("member_added", "ben"), ("client_event", "ben"),
                     ("member_removed", "ben"), ("member_removed", "ann"), ("channel_vacated", None)], names
    assert relay.receiver.invalid() == [], "every webhook passed validate_webhook"


@check
def validate_webhook_refuses_a_forged_or_altered_webhook(relay, sockets):
    s = sockets(relay.socket(HOOKED))
    s.join("cache-py-hooks")
    relay.receiver.wait_for(lambda e: e["name"] == "cache_miss" and e["channel"] == "cache-py-hooks")
    good = next(r for r in relay.receiver.requests if r["checked"])
    sdk = relay.receiver.sdk
    assert good["headers"]["x-pusher-key"] == HOOKED["key"] and good["headers"]["content-type"] == "application/json"
    sig = good["headers"]["x-pusher-signature"]
    assert sdk.validate_webhook(key=HOOKED["key"], signature=sig, body=good["body"]) is not None
    assert sdk.validate_webhook(key=HOOKED["key"], signature="0" * 64, body=good["body"]) is None
    assert sdk.validate_webhook(key=HOOKED["key"], signature=sig, body=good["body"].replace("events", "event5")) is None


# --- runner ---------------------------------------------------------------------------------


def run(checks, start):
    """Runs every check against the relay `start()` makes; prints and returns the counts."""
    passed, failed = 0, 0
    try:
        relay = start()
    except Exception as e:
        print("could not start sonde-relay (%s): %s" % (RELAY_BIN, e))
        print("0 passed, %d failed" % len(checks))
        return 0, len(checks)
    try:
        for fn in checks:
            opened = []

            def sockets(s):
                opened.append(s)
                return s

            started = time.time()
            try:
                fn(relay, sockets)
                passed += 1
                print("ok   %s (%.0f ms)" % (fn.__name__, (time.time() - started) * 1000))
            except Exception as e:
                failed += 1
                print("FAIL %s: %s: %s" % (fn.__name__, type(e).__name__, e))
                traceback.print_exc(limit=3, file=sys.stdout)
            finally:
                for s in opened:
                    s.close()
    finally:
        relay.stop()
    print("%d passed, %d failed" % (passed, failed))
    return passed, failed


def main():
    return 1 if run(CHECKS, Relay)[1] else 0


if __name__ == "__main__":
    sys.exit(main())
