"""The HTTP prediction endpoint: `torchwork serve --model FILE` answers JSON requests with a
saved model's predictions, every row checked the way `torchwork predict` checks a file.

    GET  /health   -> {"status": "ok", "model": "model.safetensors", "task": ..., "features": [...]}
    POST /predict  {"rows": [{"a": 1.5, "color": "red"}, ...]}
                   -> {"predictions": [...], "probabilities": [{"no": 0.2, "yes": 0.8}, ...]}

Rows are objects {column: value}, lists of values in the model's feature order, or, for a
model of one feature (the line), bare numbers; a picture column's values are its file's bytes
in base64, a text column's the documents. A model of a folder (one column of files) also takes
one file's bytes a request (Content-Type image/jpeg, image/png, ..., text/plain), read as
`torchwork predict` reads a file, and answers {"predictions": [label], "probabilities":
[{label: p, ...}]}. Rows count from 1 in error messages. A request
the model cannot answer gets a 4xx status and {"error": "one sentence saying what to change"}.

The app is a plain WSGI callable (`make_app`, no dependencies); `serve` runs it on waitress,
a small pure-Python production server with no dependencies of its own, installed with the
`serve` extra: pip install 'torchwork[serve]'.
"""
