"""FastAPI's TestClient as a client on this machine sees the server: Host "localhost" (the
default "testserver" is a host name the server does not answer to)."""

from fastapi.testclient import TestClient


def local_client(app, **options) -> TestClient:
    return TestClient(app, base_url="http://localhost", **options)
