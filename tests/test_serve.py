"""torchwork serve: the real server on a free loopback port, answering as `torchwork predict`."""

import http.client
import io
import itertools
import json
import math
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow.csv as pcsv
import pytest

pytest.importorskip("waitress")

from torchwork.cli import main
from torchwork.errors import TorchworkError
from torchwork.predict import Predictor
from torchwork.serve.app import MAX_BODY_BYTES, MAX_ROWS, make_app
from torchwork.serve.server import Server, is_loopback, make_server, serve
from torchwork.workflow.finish import learned_line


@pytest.fixture(scope="module")
def models(small_models):
    """The session's tiny trained models (conftest.py), read in place: the line, a binary (cls)
    and a multiclass (multi) table with a text column, and a numeric regression table (reg);
    with the tables they came from."""
    names = {"cls": "binary", "multi": "multiclass", "reg": "regression"}
    return {
        "line": small_models["line"],
        **{name: small_models[shared] for name, shared in names.items()},
        "tables": {name: small_models["tables"][shared] for name, shared in names.items()},
    }


@pytest.fixture
def start():
    """Start servers on free loopback ports in background threads; stop them at the end."""
    running = []

    def start_server(model_path, threads=4, **options):
        server = Server(make_app(model_path), "127.0.0.1", 0, threads=threads, **options)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        running.append((server, thread))
        return server.port

    yield start_server
    for server, thread in running:
        server.stop()
        thread.join(timeout=10)
        assert not thread.is_alive(), "the server did not stop"


def call(
    port, method, path, body=None, raw=None, content_type="application/json", conn=None, timeout=20
):
    """One HTTP request: (status, headers, JSON body or text)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    headers = {"Content-Type": content_type} if content_type else {}
    try:
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        text = response.read().decode()
    finally:
        if own:
            conn.close()
    try:
        answer = json.loads(text)
    except ValueError:
        answer = text
    return response.status, dict(response.getheaders()), answer


def exchange(port, data):
    """Raw bytes to the server, read until it closes: (status, headers, JSON body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(data)
        answer = b"".join(iter(lambda: s.recv(65536), b""))
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def closed(s, seconds, trickle):
    """Whether the server closes socket `s` within `seconds`, while `s` sends nothing or, with
    `trickle`, one more header line every 0.2 s."""
    end = time.monotonic() + seconds
    s.settimeout(0.2)
    for i in itertools.count():
        if time.monotonic() > end:
            return False
        try:
            if trickle:
                s.sendall(f"X-Line-{i}: y\r\n".encode())
            if s.recv(1024) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:  # reset: the server closed it
            return True


def feature_rows(table, target):
    return table.drop_columns([target]).to_pylist()


def predict_cli(model, table, folder, name):
    """`torchwork predict --data FILE --out FILE`, as a user types it; the written table."""
    data, out = folder / f"{name}-in.csv", folder / f"{name}-out.csv"
    pcsv.write_csv(table, data)
    assert main(["predict", "--model", str(model), "--data", str(data), "--out", str(out)]) == 0
    return pcsv.read_csv(out)


def f32(values):
    return np.asarray(values, dtype=np.float32)


@pytest.mark.parametrize(("name", "target"), [("cls", "label"), ("multi", "kind")])
def test_classification_answers_as_predict_does(models, start, tmp_path, name, target):
    table = models["tables"][name]
    port = start(models[name])
    status, _, health = call(port, "GET", "/health")
    assert status == 200
    features = [n for n in table.column_names if n != target]
    labels = sorted(set(table.column(target).to_pylist()))
    assert health == {
        "status": "ok",
        "model": "model.safetensors",
        "task": "binary" if name == "cls" else "multiclass",
        "features": features,
        "target": target,
        "labels": labels,
    }

    rows = feature_rows(table, target)
    status, headers, answer = call(port, "POST", "/predict", {"rows": rows})
    assert status == 200, answer
    assert headers["Content-Type"] == "application/json"
    expected = predict_cli(models[name], table.drop_columns([target]), tmp_path, name)
    assert answer["predictions"] == expected.column("prediction").to_pylist()
    for label in labels:
        got = [p[label] for p in answer["probabilities"]]
        np.testing.assert_array_equal(f32(got), f32(expected.column(f"probability_{label}")))
    for p in answer["probabilities"]:
        assert math.isclose(sum(p.values()), 1.0, abs_tol=1e-6)

    # The same rows as lists in the model's feature order give the same answer.
    lists = [[row[n] for n in features] for row in rows]
    assert call(port, "POST", "/predict", {"rows": lists})[2] == answer


def test_regression_predicts_in_the_target_units(models, start, tmp_path):
    table = models["tables"]["reg"]
    port = start(models["reg"])
    assert call(port, "GET", "/health")[2]["task"] == "regression"
    status, _, answer = call(port, "POST", "/predict", {"rows": feature_rows(table, "price")})
    assert status == 200, answer
    assert "probabilities" not in answer
    expected = predict_cli(models["reg"], table.drop_columns(["price"]), tmp_path, "reg")
    np.testing.assert_array_equal(f32(answer["predictions"]), f32(expected.column("prediction")))
    # The target is about 1000; scaled outputs would be near 0.
    assert 900 < np.mean(answer["predictions"]) < 1100


@pytest.mark.parametrize("file", ["model.safetensors", "model.pth"])
def test_line_takes_numbers_or_lists(models, start, file):
    path = models["line"].parent / file
    port = start(path)
    health = call(port, "GET", "/health")[2]
    assert health == {
        "status": "ok",
        "model": file,
        "task": "regression",
        "features": ["x"],
    }
    xs = [0.0, 0.25, -1.5, 2]
    status, _, answer = call(port, "POST", "/predict", {"rows": xs})
    assert status == 200, answer
    weight, bias = learned_line(Predictor.from_file(path).model)
    np.testing.assert_allclose(answer["predictions"], [weight * x + bias for x in xs], rtol=1e-6)
    for rows in ([[x] for x in xs], [{"x": x} for x in xs]):
        assert call(port, "POST", "/predict", {"rows": rows})[2] == answer
    status, _, answer = call(port, "POST", "/predict", {"rows": [1, [2, 3]]})
    assert status == 400
    assert "row 2" in answer["error"] and "takes 1" in answer["error"]


def test_bad_rows_are_400_with_one_sentence(models, start):
    port = start(models["cls"])
    good = {"a": 0.5, "b": 40.0, "color": "red"}

    def error(rows=None, raw=None, status=400, **kwargs):
        body = {"rows": rows} if rows is not None else None
        got, _, answer = call(port, "POST", "/predict", body, raw=raw, **kwargs)
        assert got == status, answer
        assert set(answer) <= {"error", "missing", "expected"}
        assert "\n" not in answer["error"]
        return answer

    answer = error([{"a": 1.0, "color": "red", "label": "yes"}])
    assert answer["missing"] == ["b"] and answer["expected"] == ["a", "b", "color"]
    assert "lacks the model's column(s) b" in answer["error"]
    assert "category 'purple' in row 2" in error([good, good | {"color": "purple"}])["error"]
    assert "known categories: blue, green, red" in error([good | {"color": "purple"}])["error"]
    # An empty number (null, NaN, or absent from a row) is its training mean, as predict
    # takes it; a category the model never saw empty is refused
    nan = b'{"rows": [{"a": 0.5, "b": NaN, "color": "red"}]}'
    assert call(port, "POST", "/predict", None, raw=nan)[0] == 200
    for rows in ([good, good | {"a": None}], [good, {"b": 1.0, "color": "red"}]):
        got, _, answer = call(port, "POST", "/predict", {"rows": rows})
        assert got == 200 and len(answer["predictions"]) == 2, answer
    assert (
        "empty cell in row 1, and the model never saw one empty"
        in error([good | {"color": None}])["error"]
    )
    inf = b'{"rows": [{"a": 1e999, "b": 1, "color": "red"}]}'
    assert "infinite value in row 1" in error(raw=inf)["error"]
    assert "too large for the model in row 1" in error([good | {"a": 1e300}])["error"]
    assert "too large" in error([good | {"a": 10**400}])["error"]
    # Past Python's 4300-digit limit for int(), without its hint about sys.set_int_max_str_digits.
    huge = b'{"rows": [{"a": ' + b"7" * 5000 + b', "b": 1, "color": "red"}]}'
    assert error(raw=huge)["error"] == (
        "the request body holds an integer of 5000 digits, too large for the model, "
        "which computes in 32-bit floats (at most about 3.4e38)"
    )
    # Booleans are no more numbers than strings are.
    assert 'must hold numbers; row 1 has "3"' in error([good | {"b": "3"}])["error"]
    assert "must hold numbers; row 1 has true" in error([good | {"b": True}])["error"]
    assert "must hold numbers; row 2 has false" in error([good, good | {"a": False}])["error"]
    assert "must hold text" in error([good | {"color": 3}])["error"]
    assert "has 2 value(s)" in error([[0.5, 1.0]])["error"]
    assert "an object but others are not" in error([good, [0.5, 1.0, "red"]])["error"]
    assert "not valid JSON" in error(raw=b'{"rows": [')["error"]
    assert "nested too deeply" in error(raw=b"[" * 200_000)["error"]
    assert "not UTF-8" in error(raw=b'{"rows": ["\xff"]}')["error"]
    assert "empty" in error(raw=b"")["error"]
    assert "empty" in error([])["error"]
    assert "JSON object" in error(raw=b"[1, 2]")["error"]
    assert "unknown key(s) 'row'" in error(raw=b'{"rows": [], "row": 1}')["error"]
    assert (
        "Content-Type: application/json"
        in error([good], status=415, content_type="text/csv")["error"]
    )
    assert "Content-Type" in error([good], status=415, content_type=None)["error"]
    assert (
        f"{MAX_ROWS + 1} rows" in error([[0.5, 1.0, "red"]] * (MAX_ROWS + 1), status=413)["error"]
    )
    # After all of that, the server still answers.
    assert call(port, "POST", "/predict", {"rows": [good]})[0] == 200


def test_paths_methods_and_body_size(models, start):
    port = start(models["cls"])
    status, _, answer = call(port, "GET", "/nowhere")
    assert status == 404 and "GET /health or POST /predict" in answer["error"]
    status, headers, answer = call(port, "GET", "/predict")
    assert status == 405 and headers["Allow"] == "POST"
    status, headers, _ = call(port, "POST", "/health", {"rows": []})
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    status, _, text = call(port, "HEAD", "/health")
    assert status == 200 and text == ""

    # A body within the limit is read (then refused as empty); one byte more is refused by
    # waitress on seeing the Content-Length, before any of it is read, in JSON as the app does.
    assert call(port, "POST", "/predict", raw=b" " * MAX_BODY_BYTES)[0] == 400
    request = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    status, headers, answer = exchange(
        port, request + f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode()
    )
    assert status == 413 and headers["Content-Type"] == "application/json"
    assert answer == {
        "error": f"the request body has {MAX_BODY_BYTES + 1} bytes, more than the "
        f"{MAX_BODY_BYTES} bytes allowed: send fewer rows per request"
    }
    # So is every request waitress refuses before the app sees it.
    status, headers, answer = exchange(port, b"GARBAGE\r\n\r\n")
    assert status == 400 and headers["Content-Type"] == "application/json"
    assert answer == {"error": "the request is not valid HTTP: Start line is invalid"}


def test_the_app_alone_refuses_large_bodies(models):
    """Under another WSGI server, the app itself answers 413 without reading the body."""
    app = make_app(models["cls"])
    answers = []
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/predict",
        "CONTENT_TYPE": "application/json; charset=utf-8",
        "CONTENT_LENGTH": str(MAX_BODY_BYTES + 1),
        "wsgi.input": io.BytesIO(b"never read"),
    }
    body = b"".join(app(environ, lambda status, headers: answers.append(status)))
    assert answers == ["413 Request Entity Too Large"]
    assert "send fewer rows" in json.loads(body)["error"]
    assert environ["wsgi.input"].tell() == 0


def test_model_file_errors_come_before_the_server(models, tmp_path):
    with pytest.raises(TorchworkError, match="does not exist"):
        make_server(tmp_path / "missing.safetensors", port=0)
    with pytest.raises(TorchworkError, match=r"is a folder: give its model file, e\.g\."):
        make_app(models["cls"].parent)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(TorchworkError, match="not a readable safetensors file"):
        serve(bad, port=0)


def test_busy_port_and_missing_waitress(models, monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(TorchworkError, match="cannot listen on 127.0.0.1 port"):
            make_server(models["cls"], "127.0.0.1", taken.getsockname()[1])
    monkeypatch.setitem(sys.modules, "waitress", None)
    with pytest.raises(TorchworkError, match=r"pip install 'torchwork\[serve\]'"):
        make_server(models["cls"], port=0)


def test_loopback_by_default_and_a_warning_otherwise(models, monkeypatch):
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.5", "example.com"))
    # Serve on loopback while pretending it is not, to see the warning; run() returns at once.
    monkeypatch.setattr("torchwork.serve.server.is_loopback", lambda host: False)
    monkeypatch.setattr("torchwork.serve.server.Server.run", lambda self: None)
    lines = []
    serve(models["cls"], port=0, log=lines.append)
    assert lines[0].startswith("warning: listening on 127.0.0.1 lets other machines reach")
    # It says what the connection limits leave exposed.
    assert "connections, closing one silent for 10 s" in lines[0]
    assert "connections a second still locks others out" in lines[0]
    assert "at http://127.0.0.1:" in lines[1] and "POST /predict" in lines[1]
    assert lines[2] == "Stopped"


def test_sigterm_stops_serve_cleanly(models):
    code = "import sys; from torchwork.serve.server import serve; serve(sys.argv[1], port=0)"
    process = subprocess.Popen(
        [sys.executable, "-u", "-c", code, str(models["reg"])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(60, process.kill)
    watchdog.start()
    try:
        line = process.stdout.readline()
        assert " at http://127.0.0.1:" in line, (line, process.stderr.read())
        port = int(line.split(" at http://127.0.0.1:")[1].split(":")[0])
        assert call(port, "GET", "/health")[2]["features"] == ["a", "b"]
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        watchdog.cancel()
        process.kill()
    assert process.returncode == 0, err
    assert out.strip().endswith("Stopped")
    assert "Traceback" not in err


def test_300_half_sent_requests_leave_others_answered(models, start):
    """Bounded slow-client test on loopback: 300 connections that each send half a request and
    wait hold no slot an ordinary client needs (waitress' default limit was 100)."""
    port = start(models["line"])
    slow = []
    try:
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", port), timeout=20)
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 20\r\n")
            slow.append(s)
        status, _, answer = call(port, "POST", "/predict", {"rows": [1.0]}, timeout=1)
        assert status == 200, answer
    finally:
        for s in slow:
            s.close()


def test_a_request_must_arrive_whole_in_time(models, start):
    """waitress closes only silent connections; one sending a header line every 0.2 s is cut
    off too, `request_seconds` after its first byte, while a client whose requests each
    arrive at once keeps its connection however long it stays."""
    port = start(models["line"], request_seconds=1)

    def regular():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            for _ in range(5):
                time.sleep(0.4)
                assert call(port, "GET", "/health", conn=conn)[0] == 200
        finally:
            conn.close()

    with (
        ThreadPoolExecutor(1) as pool,
        socket.create_connection(("127.0.0.1", port), timeout=20) as trickling,
        socket.create_connection(("127.0.0.1", port), timeout=20) as silent,
    ):
        kept = pool.submit(regular)
        trickling.sendall(b"GET /health HTTP/1.1\r\n")
        assert closed(trickling, 4, trickle=True)
        assert closed(silent, 3, trickle=False)
        kept.result()


def test_load_2000_requests_from_8_threads(models, start):
    """Bounded load on loopback: every answer right, no errors, with rows of 1 and 5."""
    table = models["tables"]["cls"]
    rows = feature_rows(table, "label")[:40]
    port = start(models["cls"])
    # The trusted answers: the model itself, row by row.
    predictor = Predictor.from_file(models["cls"])
    probabilities = predictor.encoder.decode(predictor.outputs(predictor.encoder.transform(table)))[
        "probabilities"
    ][:40, 1].numpy()

    def client(worker):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        wrong = 0
        try:
            for i in range(250):
                start_row = (worker * 250 + i) % 36
                size = 1 if i % 2 else 5
                status, _, answer = call(
                    port,
                    "POST",
                    "/predict",
                    {"rows": rows[start_row : start_row + size]},
                    conn=conn,
                )
                got = [p["yes"] for p in answer["probabilities"]] if status == 200 else []
                if len(got) != size or not np.allclose(
                    got, probabilities[start_row : start_row + size], atol=1e-6
                ):
                    wrong += 1
        finally:
            conn.close()
        return wrong

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(client, range(8))) == 0
