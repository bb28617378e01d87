"""Fixtures for the Python suite: a real crewsync-server on 127.0.0.1 with the demo
seed, a dispatcher speaking its HTTP API, and helpers to open devices through the
generated bindings."""

import asyncio
import datetime
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest

import crewsync_ffi as ffi

PASSWORD = "crewsync-demo"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dead_url():
    """A loopback port nothing listens on: the network is down."""
    return f"http://127.0.0.1:{free_port()}"


def run(coroutine):
    return asyncio.run(coroutine)


def today():
    return datetime.datetime.now(datetime.timezone.utc).date().isoformat()


def now_ms():
    return int(time.time() * 1000)


def eventually(what, check, attempts=400):
    """Polls `check` (bounded: attempts × 25 ms) until it is true."""
    for _ in range(attempts):
        if check():
            return
        time.sleep(0.025)
    raise AssertionError(f"never happened: {what}")


def http(url, method="GET", token=None, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if body is not None:
        request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            text = answer.read()
            return answer.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def http_bytes(url, token):
    """GET raw bytes: (status, body)."""
    request = urllib.request.Request(url)
    request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Server:
    """A crewsync-server process with its own data directory and port."""

    def __init__(self):
        self.binary = os.environ["CREWSYNC_SERVER_BIN"]
        self.data = tempfile.mkdtemp(prefix="crewsync-py-server-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None

    def start(self):
        log = open(os.path.join(self.data, "server.log"), "ab")
        self.process = subprocess.Popen(
            [self.binary, "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data,
             "--sign-in-limit-per-account", "10000/min", "--sign-in-limit-per-device", "10000/min",
             "--sign-in-limit-per-ip", "10000/min"],
            stdout=log, stderr=log)
        for _ in range(600):
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: see {self.data}/server.log")
            try:
                if http(self.url + "/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server never became healthy")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def remove(self):
        shutil.rmtree(self.data, ignore_errors=True)


class Dispatcher:
    """The office side, through the server's HTTP API."""

    def __init__(self, url):
        self.url = url
        status, tokens = http(url + "/v1/auth/sign-in", "POST", body={
            "email": "dispatcher@lgm.example", "password": PASSWORD,
            "device_id": str(uuid.uuid4())})
        assert status == 200, tokens
        self.token = tokens["access_token"]
        self.location_id = tokens["user"]["location_id"]
        self.tenant_id = tokens["user"]["tenant"]

    def new_journey(self, crew):
        status, created = http(self.url + "/v1/journeys", "POST", self.token, {
            "date": today(), "location_id": self.location_id, "truck_number": "T-12"})
        assert status in (200, 201), created
        journey = created["id"]
        for user in crew:
            self.assign(journey, user)
        return journey

    def assign(self, journey, user):
        status, answer = http(f"{self.url}/v1/journeys/{journey}/crew", "POST", self.token,
                              {"user_id": user})
        assert status == 200, answer

    def unassign(self, journey, user):
        status, answer = http(f"{self.url}/v1/journeys/{journey}/crew/{user}", "DELETE",
                              self.token)
        assert status == 200, answer

    def media(self, media_id):
        """The original bytes the server holds: (status, bytes)."""
        return http_bytes(f"{self.url}/v1/media/{media_id}", self.token)

    def journey(self, journey):
        status, answer = http(f"{self.url}/v1/journeys/{journey}", token=self.token)
        assert status == 200, answer
        return answer


@pytest.fixture(scope="session")
def server():
    s = Server()
    s.start()
    yield s
    s.stop()
    s.remove()


@pytest.fixture(scope="session")
def dispatcher(server):
    return Dispatcher(server.url)


class Recorder:
    """Collects what an observer hears, from whichever thread calls it."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seen = []

    def add(self, *value):
        with self.lock:
            self.seen.append(value if len(value) > 1 else value[0])

    def all(self):
        with self.lock:
            return list(self.seen)


class StatusRecorder(Recorder, ffi.SyncStatusObserver):
    def on_status(self, status):
        self.add(status)


class JourneyRecorder(Recorder, ffi.JourneyObserver):
    def on_journey(self, journey, rejected):
        self.add(journey, rejected)


class UploadRecorder(Recorder, ffi.UploadProgressObserver):
    def on_progress(self, progress):
        self.add(progress)


@pytest.fixture
def open_device(tmp_path):
    opened = []

    def open_(server_url, name="device"):
        device = ffi.CrewDevice.open(str(tmp_path / f"{name}.sqlite"), server_url)
        opened.append(device)
        return device

    yield open_
    for device in opened:
        try:
            device.shutdown()
        except ffi.CrewsyncError.Other:
            pass
