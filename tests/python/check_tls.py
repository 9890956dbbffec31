"""The official Python `pusher` SDK against a sonde-relay serving https:// and wss://.

The relay's certificate comes from a CA made with `openssl` when this runs. The SDK trusts it
through a requests backend that verifies against that CA: with `ssl=True` the SDK pins its
own bundled roots (`verify=pusher/cacert.pem`), so neither REQUESTS_CA_BUNDLE nor
SSL_CERT_FILE reaches it. Websockets trust the CA through websocket-client's `sslopt`.
Prints `N passed, N failed` like check_sdk.py.
"""

import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

import pusher
import pusher.requests
import requests

from check_sdk import HOOKED, MAIN, RELAY_BIN, Receiver, Socket, free_port, run, toml_app

LEAF_EXTENSIONS = """subjectAltName = IP:127.0.0.1, DNS:localhost
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
"""


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_ca(directory):
    """A CA (ca.pem) and two certificates it issued for 127.0.0.1: `relay` and `hooks`."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key",
            "-out", "ca.pem", "-days", "2", "-subj", "/CN=Sonde Python test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    with open(os.path.join(directory, "leaf.ext"), "w") as f:
        f.write(LEAF_EXTENSIONS)
    for name in ("relay", "hooks"):
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", name + ".key",
                "-out", name + ".csr", "-subj", "/CN=" + name, cwd=directory)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
                "-extfile", "leaf.ext", "-out", name + ".pem", cwd=directory)
    return os.path.join(directory, "ca.pem")


class TlsRelay:
    """A sonde-relay process serving TLS, with app MAIN and app HOOKED posting webhooks to an
    https receiver whose certificate the relay trusts through `[webhooks] ca_file`."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="sonde-py-tls-")
        self.ca_file = make_ca(self.dir)
        path = lambda name: os.path.join(self.dir, name)
        hooks_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        hooks_tls.load_cert_chain(path("hooks.pem"), path("hooks.key"))
        self.receiver = Receiver(HOOKED, tls=hooks_tls)
        with open(path("relay.toml"), "w") as f:
            f.write('[webhooks]\nca_file = "%s"\n\n' % self.ca_file)
            f.write(toml_app(HOOKED, [{"url": self.receiver.url, "event_types": ["channel_occupied", "client_event"]}]))
        self.port = free_port()
        args = [RELAY_BIN, "--bind", "127.0.0.1:%d" % self.port, "--app", "%s:%s:%s" % (MAIN["id"], MAIN["key"], MAIN["secret"]),
                "--config", path("relay.toml"), "--tls-cert", path("relay.pem"), "--tls-key", path("relay.key")]
        self.log = open(path("relay.log"), "w+")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        self.trust = ssl.create_default_context(cafile=self.ca_file)
        self.wait_ready()

    def wait_ready(self, timeout=20.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError("sonde-relay exited with %s:\n%s" % (self.proc.returncode, self.log.read()[-4000:]))
            try:
                with urllib.request.urlopen("https://127.0.0.1:%d/readyz" % self.port, timeout=1, context=self.trust) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("sonde-relay not ready over https within %ss" % timeout)

    def stop(self):
        self.receiver.stop()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def sdk(self, app=MAIN, trusting=True):
        """The SDK over https; `trusting`: with a backend that verifies against the test CA."""
        ca_file = self.ca_file

        class TestCaBackend(pusher.requests.RequestsBackend):
            def __init__(self, client, **options):
                super().__init__(client, **options)
                self.options["verify"] = ca_file

        backend = {"backend": TestCaBackend} if trusting else {}
        return pusher.Pusher(app_id=app["id"], key=app["key"], secret=app["secret"], host="127.0.0.1", port=self.port,
                             ssl=True, timeout=5, **backend)

    def socket(self, app=MAIN):
        url = "wss://127.0.0.1:%d/app/%s?protocol=7&client=py&version=1.0&flash=false" % (self.port, app["key"])
        return Socket(url, sslopt={"ca_certs": self.ca_file})


# --- checks ---------------------------------------------------------------------------------

CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


@check
def https_trigger_reaches_a_wss_socket(relay, sockets):
    s = sockets(relay.socket())
    s.join("py-tls-news")
    relay.sdk().trigger("py-tls-news", "headline", {"over": "tls"})
    assert s.event("headline", "py-tls-news")["data"] == {"over": "tls"}


@check
def private_channel_authorised_by_the_sdk_over_wss(relay, sockets):
    s = sockets(relay.socket())
    s.join("private-py-tls", relay.sdk().authenticate("private-py-tls", s.socket_id))
    relay.sdk().trigger_batch([{"channel": "private-py-tls", "name": "created", "data": {"id": 3}}])
    assert s.event("created", "private-py-tls")["data"] == {"id": 3}


@check
def channels_and_channel_info_over_https(relay, sockets):
    s = sockets(relay.socket())
    s.join("py-tls-room")
    listed = relay.sdk().channels_info(prefix_filter="py-tls-room")
    assert "py-tls-room" in listed["channels"], listed
    info = relay.sdk().channel_info("py-tls-room")
    assert info["occupied"] is True, info


@check
def without_the_test_ca_the_sdk_refuses_the_certificate(relay, sockets):
    # The SDK's own roots, even with REQUESTS_CA_BUNDLE naming the CA: it pins its bundle.
    os.environ["REQUESTS_CA_BUNDLE"] = relay.ca_file
    try:
        relay.sdk(trusting=False).trigger("py-tls-never", "ev", {})
    except requests.exceptions.SSLError as e:
        assert "certificate" in str(e).lower(), e
    else:
        raise AssertionError("the SDK's bundled roots accepted a certificate of the test CA")
    finally:
        del os.environ["REQUESTS_CA_BUNDLE"]


@check
def https_webhooks_pass_validate_webhook(relay, sockets):
    s = sockets(relay.socket(HOOKED))
    s.join("py-tls-hooked")
    event = relay.receiver.wait_for(lambda e: e["name"] == "channel_occupied" and e["channel"] == "py-tls-hooked")
    assert event == {"name": "channel_occupied", "channel": "py-tls-hooked"}, event
    assert relay.receiver.invalid() == [], "every webhook passed validate_webhook"


def main():
    return 1 if run(CHECKS, TlsRelay)[1] else 0


if __name__ == "__main__":
    sys.exit(main())
