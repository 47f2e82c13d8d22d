"""Upload limits counted while the body streams in, and decoded-size limits from TIFF headers."""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import tifffile

from segmentation.errors import InputError
from segmentation.io import read_stack

pytest.importorskip("fastapi")

from app.middleware import UPLOAD_BUFFER_BYTES, UploadLimitMiddleware  # noqa: E402
from app.server import create_app  # noqa: E402
from app.settings import Settings  # noqa: E402

LIMIT_MB = 1.0
LIMIT_BYTES = int(LIMIT_MB * 2**20)
#: What a client tries to send: far more than the limit.
ATTEMPT_BYTES = 256 * 2**20
CHUNK_BYTES = 64 * 1024
BOUNDARY = "germsegtestboundary"


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP response that ends when the server closes the connection."""
    sock.settimeout(30)
    data = b""
    while True:
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            break
        if not piece:
            break
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def stream_chunked_upload(url: str, path: str, total: int) -> tuple[int, dict, int]:
    """POST a multipart upload of ``total`` zero bytes, chunked, from a raw socket.

    The client stops sending as soon as the server answers (or closes); it returns the
    status, the JSON body and how many bytes of the file it had sent by then.
    """
    address = urlsplit(url)
    sock = socket.create_connection((address.hostname, address.port))
    with sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {address.netloc}\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n".encode()
        )
        preamble = (
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
            'filename="huge.tif"\r\nContent-Type: image/tiff\r\n\r\n'
        ).encode()
        chunks = [preamble]
        sent = 0
        zeros = bytes(CHUNK_BYTES)
        while sent < total:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            data = chunks.pop() if chunks else zeros
            try:
                sock.sendall(b"%x\r\n" % len(data) + data + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(data) if data is zeros else 0
        else:
            epilogue = f"\r\n--{BOUNDARY}--\r\n".encode()
            sock.sendall(b"%x\r\n" % len(epilogue) + epilogue + b"\r\n0\r\n\r\n")
        status, _, body = _read_response(sock)
    return status, json.loads(body or b"{}"), sent


def _body_to_file(target: Path) -> Callable:
    """A bare ASGI app that writes every body it receives to ``target`` and answers 200."""

    async def app(scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http":
            return
        with open(target, "wb") as handle:
            while True:
                message = await receive()
                handle.write(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        headers = [(b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def test_a_chunked_body_is_cut_off_at_the_limit(tmp_path: Path, serve_app) -> None:
    target = tmp_path / "received.bin"
    app = UploadLimitMiddleware(_body_to_file(target), max_bytes=LIMIT_BYTES)
    with serve_app(app) as url:
        status, body, sent = stream_chunked_upload(url, "/anything", ATTEMPT_BYTES)
    assert status == 413
    assert body["detail"] == (
        "upload is larger than the limit of 1 MiB; crop the stack or raise GERMSEG_MAX_UPLOAD_MB"
    )
    # the client was stopped long before the end, and the app saw at most the limit
    assert sent < ATTEMPT_BYTES // 4
    assert target.stat().st_size <= LIMIT_BYTES + UPLOAD_BUFFER_BYTES


def test_a_small_chunked_body_passes(tmp_path: Path, serve_app) -> None:
    target = tmp_path / "received.bin"
    app = UploadLimitMiddleware(_body_to_file(target), max_bytes=LIMIT_BYTES)
    with serve_app(app) as url:
        status, _, sent = stream_chunked_upload(url, "/anything", LIMIT_BYTES // 2)
    assert status == 200 and sent >= LIMIT_BYTES // 2


def test_segment_refuses_a_chunked_upload_over_the_limit(
    tmp_path: Path, tiny_model, serve_app
) -> None:
    results = tmp_path / "results"
    app = create_app(tiny_model, Settings(results_dir=results, max_upload_mb=LIMIT_MB))
    with serve_app(app) as url:
        status, body, sent = stream_chunked_upload(url, "/api/segment", ATTEMPT_BYTES)
        assert status == 413 and "larger than the limit of 1 MiB" in body["detail"]
        assert sent < ATTEMPT_BYTES // 4
        # the server still answers on a new connection
        address = urlsplit(url)
        with socket.create_connection((address.hostname, address.port)) as sock:
            sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert _read_response(sock)[0] == 200
    assert sorted(path.name for path in results.iterdir()) == ["example"]


def _bomb(path: Path) -> Path:
    """1 MB of deflate that decodes to 2 x 15 x 2048 x 2048 float64 (960 MiB)."""
    data = np.zeros((2, 15, 2048, 2048), np.float64)
    data[:, :, 0, 0] = np.arange(30).reshape(2, 15)
    tifffile.imwrite(path, data, compression="zlib", compressionargs={"level": 9},
                     metadata={"axes": "CZYX"})
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _bomb(tmp_path_factory.mktemp("bomb") / "bomb.tif")


def test_a_decompression_bomb_is_refused_from_its_header(bomb: Path) -> None:
    assert bomb.stat().st_size < 2 * 2**20
    with pytest.raises(InputError) as error:
        read_stack(bomb)
    assert str(error.value) == (
        "bomb.tif decodes to 960 MiB (2x15x2048x2048 float64), more than the limit of "
        "512 MiB; crop the stack, keep only the channels you need or save it as uint16"
    )
    with pytest.raises(InputError, match="more than the limit of 100 MiB"):
        read_stack(bomb, max_decoded_bytes=100 * 2**20, decode=False)


def test_header_only_read_checks_without_decoding(tmp_path: Path) -> None:
    path = tmp_path / "stack.tif"
    data = np.random.default_rng(0).integers(0, 4096, (2, 6, 32, 40), np.uint16)
    tifffile.imwrite(path, data, metadata={"axes": "CZYX"})
    header = read_stack(path, decode=False)
    full = read_stack(path)
    assert header.image.shape == full.image.shape == (2, 6, 32, 40)
    assert header.image.strides == (0, 0, 0, 0) and not header.image.flags.writeable
    assert (header.source_axes, header.source_dtype) == (full.source_axes, full.source_dtype)
    assert read_stack(path, max_decoded_bytes=data.nbytes).image.shape == (2, 6, 32, 40)
    with pytest.raises(InputError, match="decodes to"):
        read_stack(path, max_decoded_bytes=data.nbytes - 1)


def test_segment_refuses_a_bomb_before_queuing(bomb: Path, tmp_path: Path, tiny_model) -> None:
    from fastapi.testclient import TestClient

    settings = Settings(results_dir=tmp_path / "results", max_upload_mb=8)
    with TestClient(create_app(tiny_model, settings)) as client, open(bomb, "rb") as handle:
        response = client.post(
            "/api/segment", files={"file": ("bomb.tif", handle, "image/tiff")}
        )
        assert response.status_code == 422
        assert response.json()["detail"].startswith("bomb.tif decodes to 960 MiB")
        assert client.app.state.manager.jobs() == []
    assert sorted(path.name for path in (tmp_path / "results").iterdir()) == ["example"]
