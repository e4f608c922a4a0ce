"""The WSGI app of `torchwork serve`: a request's JSON rows checked and encoded as
`torchwork predict` does a file's (Predictor.encode: each column by its kind), or for a model
of one column of files (a folder of pictures or of .txt files) one file's bytes read as
`torchwork predict` reads a file, and the model's answer as JSON."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from http import HTTPStatus
from pathlib import Path
from typing import Any

import torch

from torchwork import registry
from torchwork.config import SERVE_MAX_PIXELS
from torchwork.errors import ConfigError, TorchworkError
from torchwork.kinds.base import Source, short
from torchwork.predict import Predictor
from torchwork.runfolder import MODEL_FILES

MAX_BODY_BYTES = 1 << 20  # a larger request body of rows gets 413
MAX_IMAGE_BYTES = 16 << 20  # ...and of a picture: a phone's photo is 3 to 8 MB
MAX_HEADER_BYTES = 16 << 10  # larger request headers get 431
MAX_ROWS = 10_000  # more rows in one request get 413
MAX_DIGITS = 400  # a longer integer gets 400 as it is parsed (float32 stops at 39 digits)
SOURCE = "the request"  # how error messages name the data, as they name a file
FIX = "fix or remove those rows"
ROUTES = {"/health": ("GET", "HEAD"), "/predict": ("POST",)}
MAX_IMAGE_PIXELS = SERVE_MAX_PIXELS  # pictures of more are refused (serve --max-pixels)
logger = logging.getLogger("torchwork.serve")


class RequestError(Exception):
    """A request the server refuses: an HTTP status and one sentence for the client."""

    def __init__(
        self,
        status: int,
        message: str,
        details: dict[str, Any] | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or {}
        self.headers = headers or []


class PredictionApp:
    """The WSGI application: one loaded model answering GET /health and POST /predict."""

    def __init__(self, predictor: Predictor, max_pixels: int = MAX_IMAGE_PIXELS) -> None:
        self.predictor = predictor
        self.encoder = predictor.encoder
        # A model of one column of files (pictures, text files) takes JSON rows, or one
        # file's bytes as the body
        self.file_block = predictor.file_block
        blocks = getattr(self.encoder, "blocks", None) or []
        # ...and any model with such a column, its files in JSON: the larger body limit
        self.images = any(b.media_types for b in blocks)
        # Predictor.outputs sets the model's eval flag on every call: one forward at a time
        # keeps that shared state out of any race; the model is tiny next to JSON and checks.
        self.lock = threading.Lock()
        self.features: list[str] = []
        self.where = Source(SOURCE, max_pixels=max_pixels)  # no folder a path could name
        self.features = predictor.feature_names
        self.takes = f"features {', '.join(self.features)}"
        self.health: dict[str, Any] = {
            "status": "ok",
            "model": predictor.path.name,
            "task": self.encoder.task if self.encoder is not None else "regression",
            "features": self.features,
        }
        if self.encoder is not None:
            self.health["target"] = self.encoder.target
            if self.encoder.task != "regression":
                self.health["labels"] = self.encoder.labels
        block = self.file_block
        if block is not None:  # also one file's bytes as the body, of these types
            self.noun = registry.KINDS[block.kind].noun
            self.takes += f", or one file a request ({', '.join(block.media_types[:2])})"
            self.health |= block.describe_input() | {"content_types": list(block.media_types)}

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        headers: list[tuple[str, str]] = []
        try:
            status, body = 200, self.route(environ)
        except RequestError as e:
            status, body, headers = e.status, {"error": e.message, **e.details}, e.headers
        except TorchworkError as e:
            status, body = 400, {"error": str(e)}
        except Exception:
            logger.exception("error while answering %s", environ.get("PATH_INFO"))
            status, body = 500, {"error": "the server failed to answer; its log has the details"}
        payload = json_body(body)
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            *headers,
        ]
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [payload]

    def route(self, environ: dict[str, Any]) -> dict[str, Any]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if path not in ROUTES:
            raise RequestError(
                404, f"no such path {path[:100]!r}: use GET /health or POST /predict"
            )
        allowed = ROUTES[path]
        if method not in allowed:
            raise RequestError(
                405,
                f"{path} answers {' or '.join(allowed)}, not {method[:20]}",
                headers=[("Allow", ", ".join(allowed))],
            )
        if path == "/health":
            return self.health
        if self.file_block is not None and _media_type(environ) != "application/json":
            block = self.file_block
            return self.predict_file(_read_file(environ, block.media_types, self.noun))
        return self.predict(_read_json(environ, self.images))

    def predict(self, body: Any) -> dict[str, Any]:
        """The answer to one request body (already decoded from JSON)."""
        rows = _rows_of(body)
        return self.answer(self.inputs(rows))

    def predict_file(self, data: bytes) -> dict[str, Any]:
        """The answer to one file's bytes (a picture), as the prediction of one row."""
        import pyarrow as pa

        column = self.file_block.columns[0]
        table = pa.table({column: pa.array([data], pa.binary())})
        # A DataError (not an image, corrupt, too small, over the pixel limit) is a 400.
        _, X = self.predictor.encode(table, self.where, FIX)
        return self.answer(X)

    def answer(self, X: Any) -> dict[str, Any]:
        """The model's outputs for the inputs X, as JSON: the predictions (and for a
        classifier, each row's class probabilities)."""
        with self.lock:
            outputs = self.predictor.outputs(X)
        if not bool(torch.isfinite(outputs).all()):
            row = int((~torch.isfinite(outputs)).reshape(len(outputs), -1).any(1).nonzero()[0])
            raise RequestError(
                400,
                f"the model's output for row {row + 1} is not a finite number: "
                "its values are far outside what the model was trained on",
            )
        if self.encoder is None:
            return {"predictions": _floats(outputs.reshape(-1))}
        decoded = self.encoder.decode(outputs)
        if self.encoder.task == "regression":
            answer = {"predictions": _floats(decoded["prediction"])}
            if "lower" in decoded:  # --interval: the split-conformal bounds
                answer |= {"lower": _floats(decoded["lower"]), "upper": _floats(decoded["upper"])}
            return answer
        labels = [str(label) for label in self.encoder.labels]
        return {
            "predictions": self.encoder.labels_of(decoded["index"]),
            "probabilities": [
                dict(zip(labels, row, strict=True)) for row in _floats(decoded["probabilities"])
            ],
        }

    def inputs(self, rows: list[Any]) -> Any:
        """The rows as the model's input tensor, every value checked."""
        import pyarrow as pa

        raw = self.columns(rows)
        table = pa.table(
            {
                name: self.predictor.from_json(name, values, self.where)
                for name, values in raw.items()
            }
        )
        _, X = self.predictor.encode(table, self.where, FIX)
        blocks = self.encoder.blocks if self.encoder is not None else []
        tensors = X.tensors if self.encoder is not None else (X,)
        for k, tensor in enumerate(tensors):
            numbers = isinstance(tensor, torch.Tensor) and tensor.is_floating_point()
            finite = torch.isfinite(tensor) if numbers else None
            if finite is None or bool(finite.all()) or tensor.dim() != 2:
                continue
            row, column = (int(i) for i in (~finite).nonzero()[0])
            names = blocks[k].input_names() if blocks else self.features
            raise RequestError(
                400,
                f"column '{names[column]}' of {SOURCE} has a value in row {row + 1} too large for "
                "the model, which computes in 32-bit floats (at most about 3.4e38)",
            )
        return X

    def columns(self, rows: list[Any]) -> dict[str, list[Any]]:
        """The rows' values, column by column, in the model's feature order."""
        names = self.features
        order = f"in the order {', '.join(names)}"
        if all(isinstance(row, dict) for row in rows):
            present = set().union(*rows)
            missing = [n for n in names if n not in present]
            if missing:
                extra = sorted(str(n) for n in present if n not in names)
                raise RequestError(
                    400,
                    f"{SOURCE} lacks the model's column(s) {', '.join(missing)}"
                    + (f"; it has other columns {', '.join(extra[:20])}" if extra else "")
                    + f"; the model needs {', '.join(names)}",
                    {"missing": missing, "expected": names},
                )
            # A column absent from some rows is an empty cell there, which check_values names.
            return {n: [row.get(n) for row in rows] for n in names}
        for i, row in enumerate(rows):
            if isinstance(row, dict):
                raise RequestError(
                    400,
                    f"row {i + 1} of {SOURCE} is an object but others are not: send every row as an "
                    f"object {{column: value}}, or every row as a list of values {order}",
                )
            if not isinstance(row, list) and len(names) > 1:
                raise RequestError(
                    400,
                    f"row {i + 1} of {SOURCE} is {short(row)}: send each row as an object "
                    f"{{column: value}} or a list of {len(names)} values {order}",
                )
            if isinstance(row, list) and len(row) != len(names):
                raise RequestError(
                    400,
                    f"row {i + 1} of {SOURCE} has {len(row)} value(s); the model takes "
                    f"{len(names)} per row, {order}",
                )
        if len(names) == 1:
            return {names[0]: [row[0] if isinstance(row, list) else row for row in rows]}
        return {n: [row[j] for row in rows] for j, n in enumerate(names)}


def _rows_of(body: Any) -> list[Any]:
    """The list of rows from a request body {"rows": [...]}, within the size limit."""
    if not isinstance(body, dict) or "rows" not in body:
        raise RequestError(400, 'the request body must be a JSON object {"rows": [...]}')
    unknown = [str(k) for k in body if k != "rows"]
    if unknown:
        raise RequestError(
            400,
            f"unknown key(s) {', '.join(repr(k[:40]) for k in unknown[:10])} in the request body: "
            'send only {"rows": [...]}',
        )
    rows = body["rows"]
    if not isinstance(rows, list):
        raise RequestError(400, f'"rows" must be a list of rows, not {short(rows)}')
    if not rows:
        raise RequestError(400, '"rows" is empty: send at least one row')
    if len(rows) > MAX_ROWS:
        raise RequestError(
            413,
            f"{len(rows)} rows is more than the {MAX_ROWS} one request may hold: "
            "send them in several requests",
        )
    return rows


def _floats(values: torch.Tensor) -> list[Any]:
    """float32 values (a vector, or a matrix as a list of rows) as the shortest decimals that
    read back as the same float32: 0.9, not 0.8999999761581421."""
    array = values.detach().cpu().numpy()
    if array.ndim == 2:
        return [[float(str(v)) for v in row] for row in array]
    return [float(str(v)) for v in array.reshape(-1)]


def _media_type(environ: dict[str, Any]) -> str:
    """The request's Content-Type without its parameters, in lower case."""
    return str(environ.get("CONTENT_TYPE", "")).split(";")[0].strip().lower()


def _read_body(environ: dict[str, Any], images: bool = False) -> bytes:
    """The request body's bytes, within the size limit (checked before any is read)."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise RequestError(400, "the Content-Length header is not a number") from None
    if length > body_limit(images):
        raise RequestError(413, body_too_large(length, images))
    return environ["wsgi.input"].read(length) if length > 0 else b""


def _read_file(environ: dict[str, Any], types: tuple[str, ...], noun: str) -> bytes:
    """The body of a model of one column of files (`noun`: "images", "text files"): one
    file's bytes, after checking its type (one of `types`) and size."""
    kind = _media_type(environ)
    one = noun.removesuffix("s")
    if kind not in types:
        got = str(environ.get("CONTENT_TYPE", ""))[:60]
        sent = f"a body of type {got}" if got else "a body without a Content-Type"
        raise RequestError(
            415,
            f"this model learned from {noun} and takes one {one}, not {sent}: POST its bytes "
            f"as the body with Content-Type: {' or '.join(types[:2])}, e.g. curl "
            f"--data-binary @file -H 'Content-Type: {types[0]}' (or JSON rows, "
            "Content-Type: application/json)",
        )
    data = _read_body(environ, images=True)
    if not data:
        raise RequestError(400, f"the request body is empty: send one {one}'s bytes")
    return data


def _read_json(environ: dict[str, Any], images: bool = False) -> Any:
    """The request body, decoded from JSON, after checking its type and size (`images`: a
    model with a column of pictures, which arrive in base64, takes larger bodies)."""
    kind = environ.get("CONTENT_TYPE", "")
    if _media_type(environ).startswith("image/"):
        raise RequestError(
            415,
            f"this model learned from rows of a table, not images: send the rows as JSON "
            f'{{"rows": [...]}} with Content-Type: application/json (got {kind[:60]})',
        )
    if _media_type(environ) != "application/json":
        raise RequestError(
            415,
            f"send the rows as JSON with Content-Type: application/json (got {kind[:60] or 'none'})",
        )
    data = _read_body(environ, images)
    if not data.strip():
        raise RequestError(400, 'the request body is empty: send {"rows": [...]}')
    try:
        return json.loads(data.decode("utf-8"), parse_int=_integer)
    except UnicodeDecodeError:
        raise RequestError(400, "the request body is not UTF-8 text: send JSON in UTF-8") from None
    except RecursionError:
        raise RequestError(400, "the request body is nested too deeply to be rows") from None
    except ValueError as e:
        raise RequestError(400, f"the request body is not valid JSON: {e}") from None


def _integer(text: str) -> int:
    """A JSON integer; a very long one is refused before int() meets Python's digit limit."""
    digits = len(text.lstrip("-"))
    if digits > MAX_DIGITS:
        raise RequestError(
            400,
            f"the request body holds an integer of {digits} digits, too large for the model, "
            "which computes in 32-bit floats (at most about 3.4e38)",
        )
    return int(text)


def body_limit(images: bool) -> int:
    """The largest request body a model's server reads: rows, or one picture."""
    return MAX_IMAGE_BYTES if images else MAX_BODY_BYTES


def body_too_large(length: int | None, images: bool = False) -> str:
    """The 413 sentence, from the app or from waitress (which may not know the length)."""
    size = f"{length} bytes, more than" if length else "more than"
    fix = (
        "send the file smaller (a picture resized, or as a JPEG)"
        if images
        else "send fewer rows per request"
    )
    return f"the request body has {size} the {body_limit(images)} bytes allowed: {fix}"


def json_body(body: dict[str, Any]) -> bytes:
    """A JSON response body, as every answer and every refusal is sent."""
    return json.dumps(body, allow_nan=False, separators=(",", ":")).encode()


def make_app(model_path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> PredictionApp:
    """The WSGI app answering with the model saved in `model_path`, loaded once; pictures
    sent to it of at most `max_pixels` pixels.

    >>> app = make_app("runs/example/model.safetensors")  # doctest: +SKIP
    """
    path = Path(model_path)
    if path.is_dir():
        found = [name for name in MODEL_FILES if (path / name).is_file()]
        hint = f": give its model file, e.g. {path / found[0]}" if found else ": give a model file"
        raise ConfigError(f"--model {path} is a folder{hint}")
    if max_pixels < 1:
        raise ConfigError(f"--max-pixels must be at least 1 (got {max_pixels})")
    return PredictionApp(Predictor.from_file(path), max_pixels)
