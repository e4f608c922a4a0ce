"""Image models exported and served: the ONNX and .pt2 graphs take uint8 pixels and give what
`torchwork predict` gives, the JSON beside them says how to make those pixels, and `serve`
answers a PNG or JPEG upload as `predict` answers the same file."""

import io
import json
import math
import shutil

import numpy as np
import pyarrow.csv as pcsv
import pytest
import torch
from PIL import Image

from conftest import write_digits
from torchwork.cli import main
from torchwork.export import export_model
from torchwork.predict import Predictor
from torchwork.serve.app import MAX_IMAGE_BYTES, make_app


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Trained once for the module, in one folder beside their data: a small multiclass CNN on
    30 digits of each class, in RGB (multi), a small binary TinyVGG on the 0s and 1s, in grey
    (binary), and the line, a table model (line); with a PNG and a JPEG of a digit to predict
    (png, jpg). Narrow layers: the tests need outputs, not accuracy."""
    folder = tmp_path_factory.mktemp("images")
    write_digits(folder / "digits", per_class=30)
    for digit in ("0", "1"):
        shutil.copytree(folder / "digits" / digit, folder / "pair" / digit)
    runs = {
        "multi": ["--data", "digits", "--epochs", "2", "--hidden", "8,8"],
        "binary": [
            "--data",
            "pair",
            "--model",
            "tinyvgg",
            "--hidden",
            "4",
            "--channels",
            "1",
            "--epochs",
            "2",
        ],
        "line": ["--epochs", "1"],
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        for name, flags in runs.items():
            assert main(["run", *flags, "--out", name, "--no-plots"]) == 0
    png = sorted((folder / "digits" / "3").glob("*.png"))[0]
    jpg = folder / "three.jpg"
    Image.open(png).convert("RGB").resize((24, 24)).save(jpg, quality=90)
    return {
        "folder": folder,
        **{name: folder / name / "model.safetensors" for name in runs},
        "png": png,
        "jpg": jpg,
    }


def pixels_from_sidecar(sidecar: dict, paths) -> np.ndarray:
    """The export's input built with Pillow from the JSON file alone, as another program would."""
    preprocess = sidecar["inputs"][0]["preprocess"]
    assert preprocess["resize"] == "squeeze" and preprocess["filter"] == "bilinear"
    size = preprocess["image_size"]
    images = []
    for path in paths:
        with Image.open(path) as img:
            picture = img.convert(preprocess["mode"]).resize(
                (size, size), Image.Resampling.BILINEAR
            )
        values = np.asarray(picture)
        images.append(values[None] if values.ndim == 2 else values.transpose(2, 0, 1))
    return np.stack(images)


def run_export(path, pixels: np.ndarray) -> np.ndarray:
    """The exported graph's outputs for uint8 pixels [N, C, S, S]."""
    if str(path).endswith(".onnx"):
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (given,) = session.get_inputs()
        assert given.name == "pixels" and given.type == "tensor(uint8)"
        assert isinstance(given.shape[0], str)  # the batch size is not baked in
        return session.run(None, {"pixels": pixels})[0]
    module = torch.export.load(path).module()
    with torch.inference_mode():
        return module(torch.from_numpy(pixels)).numpy()


def check_sidecar(sidecar: dict, encoder) -> None:
    """The JSON beside an export: the model file's own image preprocessing, and its outputs."""
    (block,) = encoder.blocks
    classes, channels = len(encoder.labels), block.channels
    (pixels,) = sidecar["inputs"]
    assert (
        pixels["preprocess"]
        == block.reading()
        == {
            "image_size": 16,  # --image-size auto for 8x8 pictures
            "channels": channels,
            "mode": "RGB" if channels == 3 else "L",
            "resize": "squeeze",
            "filter": "bilinear",
            "input": "uint8 NCHW pixels; the model normalises them itself",
        }
    )
    assert sidecar["labels"] == encoder.labels == [str(d) for d in range(classes)]
    assert sidecar["task"] == ("multiclass" if classes > 2 else "binary")
    assert pixels["name"] == "pixels" and pixels["dtype"] == "uint8"
    assert pixels["shape"] == ["batch", channels, 16, 16] and pixels["column"] == "file"
    assert sidecar["output"] == "probabilities"
    assert "normalises them itself" in sidecar["note"] and "not in the graph" in sidecar["note"]


def expected_for(predictor, paths) -> tuple[np.ndarray, np.ndarray]:
    """(the pixels torchwork decodes the files to, the class probabilities it predicts)."""
    pixels, probabilities = [], []
    for path in paths:  # each file as `torchwork predict --data FILE` reads it
        _, X = predictor.read(path)
        pixels.append(X.tensors[0])
        outputs = predictor.outputs(X)
        probabilities.append(predictor.encoder.decode(outputs)["probabilities"])
    return torch.cat(pixels).numpy(), torch.cat(probabilities).numpy()


def test_export_takes_pixels_and_predicts_what_torchwork_predicts(
    trained, fmt, tmp_path, monkeypatch
):
    monkeypatch.chdir(trained["folder"])  # where the training images are, to check on
    model_path = trained["multi"]
    logged = []
    result = export_model(model_path, fmt, out=tmp_path / f"model.{fmt}", log=logged.append)
    assert result.path.is_file() and result.checked_on == "images of its training folder"
    assert result.rows_checked == 100  # of 300, spread over the classes
    assert result.max_abs_diff <= 1e-5 and result.output_name == "probabilities"
    assert result.input_names == ["pixels"]
    assert logged[0].startswith(f"Exported {result.path}; checked on 100 images of its training")
    assert result.sidecar == tmp_path / f"model.{fmt}.preprocess.json"
    predictor = Predictor.from_file(model_path)
    sidecar = json.loads(result.sidecar.read_text())
    check_sidecar(sidecar, predictor.encoder)

    paths = [sorted((trained["folder"] / "digits" / str(d)).glob("*.png"))[d] for d in range(10)]
    pixels = pixels_from_sidecar(sidecar, paths)
    decoded, expected = expected_for(predictor, paths)
    # The JSON's recipe is torchwork's own decoding, pixel for pixel.
    np.testing.assert_array_equal(pixels, decoded)
    outputs = run_export(result.path, pixels)
    assert outputs.shape == expected.shape == (10, 10)
    np.testing.assert_allclose(outputs, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(run_export(result.path, pixels[:1]), expected[:1], atol=1e-5)


def test_a_binary_image_model_whose_folder_is_gone_is_checked_on_random_pixels(
    trained, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # pair/ is not here
    result = export_model(trained["binary"], "pt2", out="b.pt2", log=lambda *_: None)
    assert result.checked_on == "random rows" and result.rows_checked == 64
    assert result.max_abs_diff <= 1e-5 and result.input_names == ["pixels"]
    assert result.notes[0] == "Checked on random rows: its training data pair is not here."
    predictor = Predictor.from_file(trained["binary"])
    check_sidecar(json.loads((tmp_path / "b.pt2.preprocess.json").read_text()), predictor.encoder)

    paths = [sorted((trained["folder"] / "pair" / d).glob("*.png"))[0] for d in "0101"]
    pixels, expected = expected_for(predictor, paths)
    outputs = run_export(result.path, pixels)  # [1 - p, p]: a sigmoid in the graph
    assert outputs.shape == (4, 2)
    np.testing.assert_allclose(outputs, expected, rtol=0, atol=1e-5)


def call(app, body: bytes, content_type: str | None = "image/png", length=None):
    """One POST /predict to the WSGI app, without a network: (status code, JSON answer)."""
    statuses = []
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/predict",
        "CONTENT_LENGTH": str(len(body) if length is None else length),
        "wsgi.input": io.BytesIO(body),
    }
    if content_type is not None:
        environ["CONTENT_TYPE"] = content_type
    answer = b"".join(app(environ, lambda status, headers: statuses.append(status)))
    return int(statuses[0].split()[0]), json.loads(answer)


def predict_cli(model, image, tmp_path):
    """`torchwork predict --data IMAGE --out FILE`, as a user types it; the written table."""
    out = tmp_path / f"{image.stem}.csv"
    assert main(["predict", "--model", str(model), "--data", str(image), "--out", str(out)]) == 0
    return pcsv.read_csv(out, convert_options=pcsv.ConvertOptions(strings_can_be_null=False))


@pytest.mark.parametrize(
    ("name", "file", "kind"),
    [
        ("multi", "png", "image/png"),
        ("multi", "jpg", "image/jpeg"),
        ("binary", "png", "application/octet-stream"),
    ],
)
def test_serve_answers_a_picture_as_predict_does(trained, tmp_path, name, file, kind):
    app = make_app(trained[name])
    labels = Predictor.from_file(trained[name]).encoder.labels
    status, answer = call(
        app, trained[file].read_bytes(), f"{kind}; q=1" if file == "jpg" else kind
    )
    assert status == 200, answer
    expected = predict_cli(trained[name], trained[file], tmp_path)
    assert answer["predictions"] == [str(v) for v in expected.column("prediction").to_pylist()]
    (probabilities,) = answer["probabilities"]
    assert list(probabilities) == labels
    for label in labels:
        got = np.float32(probabilities[label])
        assert got == np.float32(expected.column(f"probability_{label}")[0].as_py())
    assert math.isclose(sum(probabilities.values()), 1.0, abs_tol=1e-6)
    # The same shape as a table classifier's answer: a list of predictions, one per row.
    assert set(answer) == {"predictions", "probabilities"}


def test_health_of_an_image_model(trained):
    statuses = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/health", "wsgi.input": io.BytesIO()}
    health = json.loads(
        b"".join(make_app(trained["binary"])(environ, lambda s, h: statuses.append(s)))
    )
    assert statuses == ["200 OK"]
    assert health["task"] == "binary" and health["labels"] == ["0", "1"]
    assert health["input"] == "image" and health["image_size"] == 16 and health["channels"] == 1
    assert "image/jpeg" in health["content_types"] and "image/png" in health["content_types"]


def test_bad_requests_to_an_image_model_are_one_clear_sentence(trained):
    app = make_app(trained["multi"])

    def error(body, content_type="image/png", status=400, **kwargs):
        got, answer = call(app, body, content_type, **kwargs)
        assert got == status, answer
        assert set(answer) == {"error"} and "\n" not in answer["error"]
        return answer["error"]

    assert error(b"not a picture at all") == (
        "the image cannot be read (not a JPEG, PNG, BMP, GIF, WEBP, TIFF image)"
    )
    cut = trained["png"].read_bytes()[:60]
    assert error(cut).startswith("the image cannot be read")
    tiny = io.BytesIO()
    Image.new("L", (4, 4)).save(tiny, "PNG")
    assert error(tiny.getvalue()) == "the image is 4x4 pixels, smaller than 8 a side"
    assert "empty" in error(b"")
    # JSON rows are taken too: the picture's bytes in base64
    rows = error(b'{"rows": [["not base64 !"]]}', "application/json")
    assert "not base64: send each picture's file bytes base64-encoded" in rows
    csv = error(b"a,b", "text/csv", status=415)
    assert csv.startswith("this model learned from images and takes one image, not a body of")
    assert "Content-Type: image/jpeg or image/png" in csv
    assert "without a Content-Type" in error(b"x", None, status=415)
    # Refused on its Content-Length, before a byte is read.
    too_large = error(b"never read", length=MAX_IMAGE_BYTES + 1, status=413)
    assert too_large == (
        f"the request body has {MAX_IMAGE_BYTES + 1} bytes, more than the {MAX_IMAGE_BYTES} "
        "bytes allowed: send the file smaller (a picture resized, or as a JPEG)"
    )
    # After all of that, it still answers.
    assert call(app, trained["png"].read_bytes())[0] == 200


def test_a_picture_sent_to_a_table_model_is_415(trained):
    status, answer = call(make_app(trained["line"]), trained["png"].read_bytes(), "image/png")
    assert status == 415
    assert answer["error"] == (
        "this model learned from rows of a table, not images: send the rows as JSON "
        '{"rows": [...]} with Content-Type: application/json (got image/png)'
    )


def test_the_server_answers_a_picture_and_refuses_a_large_one_in_its_words(trained):
    pytest.importorskip("waitress")
    import http.client
    import socket
    import threading

    from torchwork.serve.server import Server

    server = Server(make_app(trained["multi"]), "127.0.0.1", 0, threads=1)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
        try:
            body, headers = trained["jpg"].read_bytes(), {"Content-Type": "image/jpeg"}
            conn.request("POST", "/predict", body=body, headers=headers)
            response = conn.getresponse()
            assert response.status == 200 and json.loads(response.read())["predictions"]
        finally:
            conn.close()
        # waitress refuses on seeing the Content-Length, before the app or any byte of it.
        head = (
            "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
            f"Content-Length: {MAX_IMAGE_BYTES + 1}\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as s:
            s.sendall(head.encode())
            answer = b"".join(iter(lambda: s.recv(65536), b""))
        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line.split()[1] == b"413"
        assert json.loads(rest.partition(b"\r\n\r\n")[2])["error"].endswith(
            "send the file smaller (a picture resized, or as a JPEG)"
        )
    finally:
        server.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_a_picture_over_the_servers_pixel_limit_says_how_to_raise_it(trained):
    big = io.BytesIO()
    Image.new("L", (300, 200)).save(big, "PNG")  # a few hundred bytes, 60,000 pixels
    status, answer = call(make_app(trained["multi"], max_pixels=50_000), big.getvalue())
    assert status == 400
    assert answer["error"] == (
        "the image is 300x200 = 60,000 pixels, over the server's limit of 50,000: send a "
        "smaller picture, or start the server with --max-pixels 60000 to take it"
    )
    assert "bomb" not in answer["error"]
    # ...which takes it
    assert call(make_app(trained["multi"], max_pixels=60_000), big.getvalue())[0] == 200
