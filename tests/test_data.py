import pytest
import torch

from torchwork import TorchworkError, batches, make_line, make_regression, split


def test_make_line_is_the_course_line():
    X, y = make_line()
    assert X.shape == (50, 1) and y.shape == (50, 1)
    assert torch.equal(X, torch.arange(0, 1, 0.02).unsqueeze(dim=1))
    assert torch.equal(y, 0.7 * X + 0.3)
    assert y[:3].flatten().tolist() == pytest.approx([0.3, 0.314, 0.328])


def test_make_line_noise_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    _, y1 = make_line(noise=0.1, seed=3)
    _, y2 = make_line(noise=0.1, seed=3)
    assert torch.equal(y1, y2)
    assert torch.equal(torch.get_rng_state(), before)
    _, clean = make_line()
    assert 0.05 < (y1 - clean).std() < 0.15


@pytest.mark.parametrize("kwargs", [{"step": 0}, {"step": -0.1}, {"start": 1.0, "end": 1.0}])
def test_make_line_rejects_bad_ranges(kwargs):
    with pytest.raises(TorchworkError):
        make_line(**kwargs)


def test_make_regression_follows_its_weights():
    X, y = make_regression(rows=500, weights=[2.0, -1.0, 0.5], bias=0.25, seed=1)
    assert X.shape == (500, 3) and y.shape == (500, 1)
    assert torch.allclose(y, X @ torch.tensor([[2.0], [-1.0], [0.5]]) + 0.25)
    X2, y2 = make_regression(rows=500, weights=[2.0, -1.0, 0.5], bias=0.25, seed=1)
    assert torch.equal(X, X2) and torch.equal(y, y2)


def test_split_is_sequential_like_the_course():
    X, y = make_line()
    s = split(X, y)
    assert (len(s.X_train), len(s.X_val), len(s.X_test)) == (40, 0, 10)
    assert torch.equal(s.X_train, X[:40]) and torch.equal(s.y_test, y[40:])


def test_split_shuffle_is_seeded_and_keeps_every_row():
    X, y = make_line()
    a = split(X, y, train=0.6, val=0.2, test=0.2, shuffle=True, seed=7)
    b = split(X, y, train=0.6, val=0.2, test=0.2, shuffle=True, seed=7)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert (len(a.X_train), len(a.X_val), len(a.X_test)) == (30, 10, 10)
    rows = torch.cat([a.X_train, a.X_val, a.X_test]).flatten().sort().values
    assert torch.equal(rows, X.flatten())
    # pairs stay together
    assert torch.allclose(a.y_train, 0.7 * a.X_train + 0.3)


@pytest.mark.parametrize("shuffle", [False, True])
def test_split_test_rows_do_not_depend_on_the_validation_split(shuffle):
    # An mlp's default holds out validation rows (0.6/0.2/0.2) where a linear model does not
    # (0.8/0.2): on 178 rows (wine) both must be scored on the same 36 test rows.
    X = torch.arange(178.0).unsqueeze(1)
    y = X.clone()
    plain = split(X, y, train=0.8, test=0.2, shuffle=shuffle, seed=42)
    held = split(X, y, train=0.6, val=0.2, test=0.2, shuffle=shuffle, seed=42)
    assert torch.equal(plain.X_test, held.X_test) and len(held.X_test) == 36
    assert torch.equal(held.X_train, plain.X_train[: len(held.X_train)])
    assert len(held.X_train) + len(held.X_val) == len(plain.X_train)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"train": -0.1}, "between 0 and 1"),
        ({"train": 0.8, "val": 0.1, "test": 0.2}, "more than 1"),
        ({"train": 0.01, "test": 0.2}, "training split would be empty"),
        ({"train": 0.98, "test": 0.01}, "test split would be empty"),
    ],
)
def test_split_errors(kwargs, message):
    X, y = make_line()
    with pytest.raises(TorchworkError, match=message):
        split(X, y, **kwargs)


def test_shuffled_batches_visit_every_row_once_in_a_seeded_order():
    X = torch.arange(103.0).unsqueeze(1)
    y = X * 2
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    first = [xb for xb, _ in batches(X, y, 10, g1)]
    again = [xb for xb, _ in batches(X, y, 10, g2)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    seen = torch.cat(first).flatten()
    assert torch.equal(seen.sort().values, X.flatten())
    assert not torch.equal(seen, X.flatten())
    second_epoch = torch.cat([xb for xb, _ in batches(X, y, 10, g1)]).flatten()
    assert not torch.equal(second_epoch, seen)
    for xb, yb in batches(X, y, 10, g1):
        assert torch.equal(yb, xb * 2)


def test_read_features_csv_and_npy(tmp_path):
    import numpy as np

    from torchwork.data import read_features

    (tmp_path / "x.csv").write_text("a,b\n1,2\n3,4.5\n")
    np.save(tmp_path / "x.npy", np.array([[1.0, 2.0], [3.0, 4.5]]))
    for name in ("x.csv", "x.npy"):
        X = read_features(tmp_path / name)
        assert X.dtype == torch.float32 and torch.equal(X, torch.tensor([[1.0, 2.0], [3.0, 4.5]]))
    (tmp_path / "text.csv").write_text("a,b\n1,x\n3,y\n")
    with pytest.raises(TorchworkError, match="column 'b' of .*text.csv is not numeric"):
        read_features(tmp_path / "text.csv")
    (tmp_path / "typo.csv").write_text("a,b\n1,x\n3,4\n")
    with pytest.raises(
        TorchworkError, match="column 'b' of .*typo.csv has a non-numeric value 'x' in row 1"
    ):
        read_features(tmp_path / "typo.csv")
    (tmp_path / "gap.csv").write_text("a,b\n1,\n3,4\n")
    with pytest.raises(TorchworkError, match="empty or NaN cell in row 1"):
        read_features(tmp_path / "gap.csv")
