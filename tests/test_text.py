"""Text, the third kind: the tokenizer as its description says, free-text columns recognised and
learned from, folders of .txt files, what the run says about the words, exports another
program can feed, mixed rows of every kind, and each bad input a one-line error."""

import base64
import io
import itertools
import json
import re
import subprocess
import sys
import unicodedata
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
import torch

from conftest import assert_one_line_error
from torchwork.kinds.base import Source
from torchwork.kinds.encoder import recognise
from torchwork.kinds.text import tokens

POSITIVE = ["great", "lovely", "excellent", "superb", "wonderful", "delightful"]
NEGATIVE = ["awful", "terrible", "boring", "dreadful", "poor", "dull"]
FILLER = [
    "the",
    "a",
    "it",
    "was",
    "this",
    "product",
    "item",
    "arrived",
    "box",
    "some",
    "and",
    "very",
    "really",
    "quite",
]


def review(rng, positive: bool) -> str:
    """A made-up review: filler words, two of its sentiment's words, sometimes a 'not'."""
    words = list(rng.choice(FILLER, rng.integers(6, 14)))
    for _ in range(2):
        words.insert(
            rng.integers(0, len(words)), str(rng.choice(POSITIVE if positive else NEGATIVE))
        )
    return " ".join(words).capitalize() + "."


def reviews_table(rows=600, seed=0):
    rng = np.random.default_rng(seed)
    sentiment = rng.random(rows) < 0.5
    return pa.table(
        {
            "review": [review(rng, s) for s in sentiment],
            "helpful_votes": rng.integers(0, 50, rows),
            "sentiment": np.where(sentiment, "pos", "neg"),
        }
    )


def reference_ids(text: str, buckets: int, max_words: int) -> list[int]:
    """The tokenizer rebuilt from its description alone (tokens.describe), in plain Python:
    words are runs of letters, marks, digits and _, lower-cased; unigrams then bigrams."""
    words, word = [], ""
    for c in text.lower():
        if unicodedata.category(c)[0] in "LMN" or c == "_":
            word += c
        else:
            words, word = ([*words, word] if word else words), ""
    words = ([*words, word] if word else words)[:max_words]
    hashes = [zlib.crc32(w.encode()) for w in words]
    bigrams = [(a * tokens.BIGRAM_FACTOR + b) % 2**32 for a, b in itertools.pairwise(hashes)]
    return [h % buckets + 1 for h in hashes + bigrams]


@pytest.mark.parametrize(
    "text",
    [
        "Hello, World! hello",
        "Ça va? Straße_1 naïve café",
        "日本語のテキスト, and 123 numbers",
        "...leading punctuation",
        "",
        "one two three four five six seven",
    ],
)
def test_the_tokenizer_is_what_its_description_says(text):
    found = tokens.tokenize(pa.array([text]), 1000, 5)
    assert found.values.tolist() == reference_ids(text, 1000, 5)
    described = tokens.describe(1000, 5)
    assert described["split_pattern"] == tokens.PATTERN and described["ngrams"] == [1, 2]
    assert str(tokens.BIGRAM_FACTOR) in described["bigram_hash"]


def test_the_ids_are_the_same_in_every_process(tmp_path):
    code = (
        "import pyarrow as pa; from torchwork.kinds.text.tokens import tokenize; "
        "print(tokenize(pa.array(['the same words in any process']), 4096, 50).values.tolist())"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(runs) == 1


def test_free_text_is_recognised_apart_from_categories_and_ids():
    rng = np.random.default_rng(0)
    table = pa.table(
        {
            "review": [review(rng, k % 2 == 0) for k in range(300)],
            "colour": ["light sky blue", "red"] * 150,  # words, but few distinct values
            "code": [f"id{k}" for k in range(300)],  # one word, a different one each row
            "note": [f"n{k}.txt" for k in range(300)],
        }
    )
    kinds = recognise(table, table.column_names, {}, Source("t.csv"))
    assert kinds["review"][0] == "text" and "free text: 300 distinct values" in kinds["review"][1]
    assert kinds["colour"][0] == "category" and kinds["code"][0] == "category"
    assert kinds["note"] == ("text", "names of text files")


def test_a_review_column_is_learned_from(tw, tmp_path):
    """The table of reviews that ran with its review 'left out as an ID' (below the majority
    class): its words carry the label."""
    pcsv.write_csv(reviews_table(), tmp_path / "reviews.csv")
    code, out, err = tw("run", "--data", "reviews.csv", "--out", "r", "--no-plots")
    assert code == 0, err
    assert "Columns: number helpful_votes; text review" in out
    assert "--train 0.7 --val 0.1 --patience 2 (a text column" in out
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    accuracy, majority = (
        s["metrics"]["test"]["accuracy"],
        s["reference"]["metrics"]["test"]["accuracy"],
    )
    assert accuracy >= 0.95 and majority < 0.7
    pushes = s["explained"]["review"]["groups"]
    assert {g for g, _ in pushes["pos"][:6]} & set(POSITIVE)
    assert {g for g, _ in pushes["neg"][:6]} & set(NEGATIVE)
    assert "words and bigrams that push each class most: pos:" in out and "; neg:" in out
    assert s["training"]["optimizer"] == "adam" and "a text column" in s["training"]["chosen"]["lr"]


def write_folder(root, per_class=60, seed=0):
    """reviews/pos/*.txt and reviews/neg/*.txt."""
    rng = np.random.default_rng(seed)
    for label in ("pos", "neg"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            (root / label / f"{k:03d}.txt").write_text(review(rng, label == "pos"))
    return root


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """A folder of .txt files, trained on once for the tests below."""
    from torchwork.cli import main

    folder = tmp_path_factory.mktemp("text")
    write_folder(folder / "reviews")
    assert main(["run", "--data", str(folder / "reviews"), "--out", str(folder / "run")]) == 0
    return folder


def test_a_folder_of_text_files_is_a_table_of_file_and_label(text_run):
    s = json.loads((text_run / "run" / "summary.json").read_text())
    assert s["data"]["folder"] == "text files" and s["data"]["features"] == ["file"]
    assert s["metrics"]["test"]["accuracy"] >= 0.9
    assert (text_run / "run" / "plots" / "pushes_file.png").is_file()
    report = (text_run / "run" / "report.html").read_text()
    assert "What pushes the predictions" in report
    assert re.search(r"a folder of [\d,]+ text files in 2 class folders", report)
    card = (text_run / "run" / "MODEL_CARD.md").read_text()
    assert "## What pushes the predictions" in card and "Texts unlike the training texts" in card


def test_predict_and_evaluate_on_text_files_agree_with_the_run(tw, text_run, monkeypatch):
    monkeypatch.chdir(text_run)
    model = str(text_run / "run" / "model.safetensors")
    code, out, err = tw("predict", "--model", model, "--data", "reviews")
    assert code == 0, err
    predicted = pcsv.read_csv(io.BytesIO(out.encode()))
    run = pcsv.read_csv(text_run / "run" / "predictions.csv")
    by_file = dict(
        zip(run.column("file").to_pylist(), run.column("probability_pos").to_pylist(), strict=True)
    )
    for name, p in zip(
        predicted.column("file").to_pylist(),
        predicted.column("probability_pos").to_pylist(),
        strict=True,
    ):
        assert p == pytest.approx(by_file[name], abs=1e-6)
    code, out, err = tw("predict", "--model", model, "--data", "reviews/pos/000.txt")
    assert code == 0 and out.count("\n") == 2, err
    code, out, err = tw("evaluate", "--model", model, "--data", "reviews")
    assert code == 0 and "binary on 120 text files of reviews" in out, err


def test_serve_takes_a_document_as_text(text_run):
    from torchwork.serve.app import make_app

    app = make_app(text_run / "run" / "model.safetensors")
    body = b"A superb and wonderful item, really lovely."
    statuses = []
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/predict",
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "text/plain",
        "wsgi.input": io.BytesIO(body),
    }
    answer = json.loads(b"".join(app(environ, lambda s, h: statuses.append(s))))
    assert statuses == ["200 OK"] and answer["predictions"] == ["pos"]
    # ...or as JSON rows: the document itself, never a file a client names
    assert app.predict({"rows": [{"file": body.decode()}]})["predictions"] == ["pos"]


LOADER = """
import json, sys, unicodedata, zlib
import numpy as np

artifact, sidecar, out = sys.argv[1:4]
spec = json.load(open(sidecar))["inputs"][0]
t = spec["tokenizer"]
factor = int(t["bigram_hash"].split("*")[1].split("+")[0])

def ids(text):
    words, word = [], ""
    for c in text.lower():
        if unicodedata.category(c)[0] in "LMN" or c == "_":
            word += c
        else:
            words, word = (words + [word] if word else words), ""
    words = (words + [word] if word else words)[: t["max_words"]]
    h = [zlib.crc32(w.encode()) for w in words]
    grams = h + [(a * factor + b) % 2**32 for a, b in zip(h, h[1:])]
    return [g % t["buckets"] + 1 for g in grams]

texts = json.load(open("texts.json"))
rows = [ids(x) for x in texts]
X = np.zeros((len(rows), max(map(len, rows))), dtype=np.int64)
for i, r in enumerate(rows):
    X[i, : len(r)] = r
if artifact.endswith(".onnx"):
    import onnxruntime
    session = onnxruntime.InferenceSession(artifact, providers=["CPUExecutionProvider"])
    result = session.run(None, {spec["name"]: X})[0]
else:
    import torch
    result = torch.export.load(artifact).module()(torch.from_numpy(X)).detach().numpy()
np.save(out, result)
assert "torchwork" not in sys.modules
"""


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_an_export_fed_by_the_sidecar_alone_predicts_what_torchwork_does(text_run, fmt, tmp_path):
    from torchwork.export import export_model
    from torchwork.predict import Predictor

    model = text_run / "run" / "model.safetensors"
    result = export_model(model, fmt, out=tmp_path / f"m.{fmt}", log=lambda *_: None)
    assert result.max_abs_diff <= 1e-5 and result.input_names == ["tokens"]
    texts = ["A superb, lovely box!", "Dull and dreadful; really poor.", "Ça va? 日本語"]
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    (tmp_path / "loader.py").write_text(LOADER)
    done = subprocess.run(
        [sys.executable, "loader.py", str(result.path), str(result.sidecar), "out.npy"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    predictor = Predictor.from_file(model)
    table = pa.table({"file": pa.array([t.encode() for t in texts], pa.binary())})
    _, X = predictor.encode(table, Source("texts"))
    expected = predictor.encoder.decode(predictor.outputs(X))["probabilities"].numpy()
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=0, atol=1e-5)


def test_the_same_seed_gives_the_same_model_and_resume_is_bit_for_bit(tw, tmp_path):
    from safetensors.torch import load_file

    pcsv.write_csv(reviews_table(rows=300), tmp_path / "reviews.csv")
    flags = ["--data", "reviews.csv", "--no-plots", "--patience", "0", "--val", "0"]
    assert tw("run", *flags, "--epochs", "4", "--out", "whole")[0] == 0
    assert tw("run", *flags, "--epochs", "2", "--out", "part")[0] == 0
    code, _, err = tw("run", "--resume", "part", "--epochs", "4")
    assert code == 0, err
    whole, part = (
        load_file(tmp_path / "whole" / "model.safetensors"),
        load_file(tmp_path / "part" / "model.safetensors"),
    )
    assert whole.keys() == part.keys() and all(torch.equal(whole[k], part[k]) for k in whole)
    assert (tmp_path / "whole" / "metrics.csv").read_text() == (
        tmp_path / "part" / "metrics.csv"
    ).read_text()


def test_folds_and_calibration_take_text(tw, tmp_path):
    pcsv.write_csv(reviews_table(rows=300), tmp_path / "reviews.csv")
    code, _, err = tw(
        "run",
        "--data",
        "reviews.csv",
        "--no-plots",
        "--folds",
        "3",
        "--calibrate",
        "--train",
        "0.6",
        "--val",
        "0.2",
        "--out",
        "r",
    )
    assert code == 0, err
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert len(s["cross_validation"]["fits"]) == 3 and s["calibration"]["temperature"] > 0


def test_eject_refuses_a_text_run_in_one_line(tw, tmp_path):
    pcsv.write_csv(reviews_table(rows=200), tmp_path / "reviews.csv")
    assert tw("run", "--data", "reviews.csv", "--no-plots", "--epochs", "2", "--out", "r")[0] == 0
    outcome = tw("eject", "r", "--out", "train.py")
    assert_one_line_error(outcome, "its text column(s) review, which the script does not read")
    assert not (tmp_path / "train.py").exists()


def pictures_table(root, rows=240, seed=0):
    """Pictures whose brightness b is half the target, beside a number x, a category and
    text: y = 3 b + x + (1 for 'big')."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "photos").mkdir(parents=True)
    brightness = rng.random(rows)
    for k, b in enumerate(brightness):
        Image.new("L", (12, 12), int(b * 255)).save(root / "photos" / f"{k:03d}.png")
    x = rng.normal(size=rows)
    size = rng.choice(["big", "small"], rows)
    y = 3 * brightness + x + (size == "big")
    table = pa.table(
        {
            "photo": [f"photos/{k:03d}.png" for k in range(rows)],
            "x": x,
            "size": size,
            "note": [review(rng, k % 2 == 0) for k in range(rows)],
            "y": y,
        }
    )
    pcsv.write_csv(table, root / "items.csv")
    return table


def test_mixed_rows_of_every_kind_train_one_model(tw, tmp_path):
    pictures_table(tmp_path)
    code, out, err = tw("run", "--data", "items.csv", "--model", "mlp", "--no-plots", "--out", "r")
    assert code == 0, err
    assert "Columns: number x; category size; text note; image photo" in out
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["metrics"]["test"]["r2"] > 0.8
    assert [b["kind"] for b in s["data"]["columns"]] == ["number", "category", "text", "image"]
    # predict takes the same columns, the pictures relative to the table's folder
    code, out, err = tw("predict", "--model", "r/model.safetensors", "--data", "items.csv")
    assert code == 0, err
    # serve: the picture's bytes in base64, never a path
    from torchwork.predict import Predictor
    from torchwork.serve.app import PredictionApp

    app = PredictionApp(Predictor.from_file(tmp_path / "r" / "model.safetensors"))
    photo = base64.b64encode((tmp_path / "photos" / "000.png").read_bytes()).decode()
    row = {"photo": photo, "x": 0.5, "size": "big", "note": "a great item"}
    answer = app.predict({"rows": [row]})
    assert len(answer["predictions"]) == 1
    with pytest.raises(Exception, match="base64"):
        app.predict({"rows": [row | {"photo": "photos/000.png"}]})


def test_nproc_2_trains_a_text_table(tmp_path):
    from conftest import run_cli

    pcsv.write_csv(reviews_table(rows=300), tmp_path / "reviews.csv")
    result = run_cli(
        "run",
        "--nproc",
        "2",
        "--data",
        "reviews.csv",
        "--no-plots",
        "--epochs",
        "3",
        "--out",
        "r",
        cwd=tmp_path,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    assert (
        json.loads((tmp_path / "r" / "summary.json").read_text())["reproducibility"]["processes"]
        == 2
    )


# --- Bad input: one line, exit 2, nothing half-written ------------------------------------


def _not_utf8(root):
    write_folder(root, 20)
    (root / "pos" / "zz_latin.txt").write_bytes("Une critique trés bonne".encode("latin-1"))


def _empty_document(root):
    write_folder(root, 20)
    (root / "neg" / "zz_empty.txt").write_text("  ...  ")


def _binary_among_text(root):
    write_folder(root, 20)
    (root / "pos" / "zz_binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00binary")


def _empty_class_folder(root):
    write_folder(root, 20)
    (root / "meh").mkdir()


@pytest.mark.parametrize(
    ("make", "flags", "message"),
    [
        (
            _not_utf8,
            (),
            "zz_latin.txt is not utf-8 text (a byte at 15 cannot be read as utf-8): give its --encoding",
        ),
        (_empty_document, (), "zz_empty.txt holds no words"),
        (_binary_among_text, (), "zz_binary.txt is not text (it holds zero bytes"),
        (_empty_class_folder, (), "class folder docs/meh has no text files (.txt)"),
    ],
)
def test_bad_text_folders_are_one_line_errors_that_write_nothing(
    tw, tmp_path, make, flags, message
):
    make(tmp_path / "docs")
    outcome = tw("run", "--data", "docs", "--no-plots", "--out", "r", *flags)
    assert_one_line_error(outcome, message)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("make", [_not_utf8, _empty_document, _binary_among_text])
def test_skip_bad_drops_the_unusable_text_files_and_names_them(tw, tmp_path, make):
    make(tmp_path / "docs")
    code, out, err = tw(
        "run", "--data", "docs", "--no-plots", "--out", "r", "--epochs", "2", "--skip-bad"
    )
    assert code == 0, err
    assert "Dropped docs/" in out and "1 unusable file dropped (--skip-bad)" in out


def test_a_latin_1_folder_is_read_with_its_encoding(tw, tmp_path):
    _not_utf8(tmp_path / "docs")
    code, _, err = tw(
        "run",
        "--data",
        "docs",
        "--no-plots",
        "--out",
        "r",
        "--epochs",
        "2",
        "--encoding",
        "latin-1",
    )
    assert code == 0, err


def test_a_huge_one_line_document_is_cut_and_memory_stays_bounded(tw, tmp_path):
    import resource

    write_folder(tmp_path / "docs", 20)
    with open(tmp_path / "docs" / "pos" / "zz_huge.txt", "w") as f:
        chunk = "great " * 100_000
        for _ in range(170):  # about 100 MB on one line
            f.write(chunk)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code, out, err = tw("run", "--data", "docs", "--no-plots", "--out", "r", "--epochs", "2")
    assert code == 0, err
    assert "cut to their first 1,000 words" in out
    assert (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000
    )  # KB: not 100 MB x n


def test_a_mostly_empty_text_column_is_refused(tw, tmp_path):
    rng = np.random.default_rng(0)
    # 100 reviews, then 200 cells of punctuation alone: no words
    notes = [review(rng, k % 2 == 0) if k < 100 else "!!" + "?" * (k % 50) for k in range(300)]
    table = pa.table({"note": notes, "y": rng.normal(size=300)})
    pcsv.write_csv(table, tmp_path / "t.csv")
    outcome = tw("run", "--data", "t.csv", "--kind", "note=text", "--no-plots", "--out", "r")
    assert_one_line_error(outcome, "column 'note' of t.csv has no words in 200 of 300 rows")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("photos/missing.png", "names 'photos/missing.png' in row 2, which does not exist"),
        ("../outside.png", "names '../outside.png' in row 2, outside the table's folder"),
        ("photos/text.png", "image photos/text.png cannot be read (not a JPEG, PNG"),
    ],
)
def test_bad_picture_paths_are_one_line_errors(tw, tmp_path, name, message):
    from PIL import Image

    (tmp_path / "photos").mkdir()
    for k in range(30):
        Image.new("L", (12, 12), k * 8).save(tmp_path / "photos" / f"{k}.png")
    (tmp_path / "photos" / "text.png").write_text("not a picture")
    (tmp_path.parent / "outside.png").write_bytes((tmp_path / "photos" / "0.png").read_bytes())
    photos = [f"photos/{k}.png" for k in range(30)]
    photos[1] = name
    pcsv.write_csv(pa.table({"photo": photos, "y": np.arange(30.0)}), tmp_path / "t.csv")
    outcome = tw("run", "--data", "t.csv", "--no-plots", "--out", "r")
    assert_one_line_error(outcome, message)
    assert not (tmp_path / "r").exists()
