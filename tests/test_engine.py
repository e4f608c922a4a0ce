import math

import pytest
import torch
from course_reference import hand_written_course

from torchwork import (
    LinearRegressionModel,
    LinearRegressionModelV2,
    TorchworkError,
    build_model,
    fit,
    least_squares,
    make_line,
    make_loss,
    make_optimizer,
    make_regression,
    mse,
    split,
    test_step,
    train_step,
)


def torchwork_course(epochs: int, **kwargs):
    X, y = make_line()
    s = split(X, y)
    torch.manual_seed(42)
    model = LinearRegressionModel()
    loss_fn = make_loss("l1")
    optimizer = make_optimizer("sgd", model.parameters(), lr=0.01)
    history = fit(
        model,
        s.X_train,
        s.y_train,
        s.X_test,
        s.y_test,
        loss_fn,
        optimizer,
        epochs,
        log=None,
        **kwargs,
    )
    return model, history


def test_fit_reproduces_the_course_numbers():
    model, history = torchwork_course(100)
    first = history.records[0]
    assert (first["epoch"], round(first["train_loss"], 4), round(first["test_loss"], 4)) == (
        0,
        0.3129,
        0.4811,
    )
    assert round(model.weights.item(), 4) == 0.5784
    assert round(model.bias.item(), 4) == 0.3513


def test_fit_is_bit_identical_to_the_hand_written_course_loop():
    reference, logged = hand_written_course(300)
    model, history = torchwork_course(300)
    assert torch.equal(model.weights, reference.weights)
    assert torch.equal(model.bias, reference.bias)
    assert [(r["epoch"], r["train_loss"], r["test_loss"]) for r in history.records] == logged


def test_log_every_sets_the_history_rows():
    _, history = torchwork_course(25, log_every=5)
    assert history.column("epoch") == [0, 5, 10, 15, 20]


def test_test_step_mean_is_exact_for_any_batch_size():
    torch.manual_seed(0)
    X, y = make_regression(rows=103, weights=[1.0, 2.0], noise=0.5, seed=0)
    model = LinearRegressionModelV2(2)
    loss_fn = make_loss("mse")
    whole = test_step(model, [(X, y)], loss_fn)
    pieces = test_step(model, [(X[i : i + 10], y[i : i + 10]) for i in range(0, 103, 10)], loss_fn)
    assert float(pieces) == pytest.approx(float(whole), rel=1e-6)
    assert model.training  # restored after evaluation


def test_train_step_returns_the_full_batch_loss_itself():
    torch.manual_seed(0)
    X, y = make_line()
    model = LinearRegressionModel()
    loss_fn = make_loss("l1")
    expected = loss_fn(model(X), y).item()
    got = train_step(model, [(X, y)], loss_fn, make_optimizer("sgd", model.parameters()))
    assert got.item() == expected


def test_early_stopping_restores_the_best_weights():
    X, y = make_regression(rows=200, weights=[1.5, -0.5], noise=1.0, seed=3)
    s = split(X, y, train=0.5, val=0.25, test=0.25, shuffle=True, seed=3)
    torch.manual_seed(0)
    model = build_model("mlp", in_features=2, hidden=[64, 64])
    loss_fn = make_loss("mse")
    seen = {}

    def record(state):
        seen[state.epoch - 1] = {k: v.clone() for k, v in model.state_dict().items()}

    history = fit(
        model,
        s.X_train,
        s.y_train,
        s.X_test,
        s.y_test,
        loss_fn,
        make_optimizer("adam", model.parameters(), lr=0.05),
        500,
        X_val=s.X_val,
        y_val=s.y_val,
        patience=5,
        log=None,
        on_epoch_end=record,
    )
    assert history.stopped_early
    assert history.best_epoch is not None and history.best_epoch < max(seen)
    best = seen[history.best_epoch]
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())
    # The restored weights really are the best on validation among those seen.
    val = {}
    for epoch, state in seen.items():
        model.load_state_dict(state)
        val[epoch] = float(test_step(model, [(s.X_val, s.y_val)], loss_fn))
    assert min(val, key=val.get) == history.best_epoch


def test_minibatches_are_reproducible_from_the_seed():
    X, y = make_regression(rows=300, weights=[1.0, 1.0, 1.0], noise=0.1, seed=0)
    s = split(X, y)
    results = []
    for _ in range(2):
        torch.manual_seed(1)
        model = LinearRegressionModelV2(3)
        history = fit(
            model,
            s.X_train,
            s.y_train,
            s.X_test,
            s.y_test,
            make_loss("mse"),
            make_optimizer("sgd", model.parameters(), lr=0.05),
            20,
            batch_size=32,
            seed=9,
            log=None,
        )
        results.append((model.state_dict(), history.records))
    assert results[0][1] == results[1][1]
    assert all(torch.equal(v, results[1][0][k]) for k, v in results[0][0].items())


def test_linear_adam_mse_reaches_the_closed_form_optimum_on_several_features():
    X, y = make_regression(
        rows=2000, weights=[2.0, -3.0, 0.5, 1.0, 0.0], bias=1.5, noise=0.5, seed=0
    )
    s = split(X, y, shuffle=True, seed=0)
    torch.manual_seed(0)
    model = LinearRegressionModelV2(5)
    fit(
        model,
        s.X_train,
        s.y_train,
        s.X_test,
        s.y_test,
        make_loss("mse"),
        make_optimizer("adam", model.parameters(), lr=0.05),
        500,
        log=None,
    )
    model.eval()
    with torch.inference_mode():
        learned = mse(model(s.X_test), s.y_test)
    optimum = mse(least_squares(s.X_train, s.y_train).predict(s.X_test), s.y_test)
    assert math.isfinite(learned)
    assert learned <= optimum * 1.01, (learned, optimum)


def test_evaluating_every_epoch_gives_the_same_history_and_parameters():
    lazy_model, lazy = torchwork_course(200)
    eager_model, eager = torchwork_course(200, eval_every=1)
    assert lazy.records == eager.records
    assert torch.equal(lazy_model.weights, eager_model.weights)
    assert torch.equal(lazy_model.bias, eager_model.bias)


def test_prefetched_shuffled_batches_equal_plain_indexing():
    from torchwork import data

    X, y = make_regression(rows=4 * data.PREFETCH_ROWS + 123, weights=[1.0, -1.0], seed=0)
    fast = list(data.batches(X, y, 1000, torch.Generator().manual_seed(3)))
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(3))
    assert len(fast) == -(-len(X) // 1000)
    for i, (xb, yb) in enumerate(fast):
        index = order[i * 1000 : (i + 1) * 1000]
        assert torch.equal(xb, X[index]) and torch.equal(yb, y[index])


def _table_like(rows=3000, seed=0):
    X, y = make_regression(rows=rows, weights=[2.0, -3.0, 0.5, 1.0], bias=1.5, noise=0.5, seed=seed)
    return split(X, y, shuffle=True, seed=0)


def test_lbfgs_reuses_its_last_evaluation_and_gives_torchs_numbers():
    s = _table_like()
    counts = []
    trained = []
    for optimizer_of in (
        lambda p: make_optimizer("lbfgs", p, lr=1.0),
        lambda p: torch.optim.LBFGS(
            p, lr=1.0, max_iter=1, max_eval=25, line_search_fn="strong_wolfe"
        ),
    ):
        torch.manual_seed(0)
        model = LinearRegressionModelV2(4)
        optimizer = optimizer_of(model.parameters())
        calls = [0]
        loss_fn = make_loss("mse")

        def counted(y_pred, y, loss_fn=loss_fn, calls=calls):
            calls[0] += 1
            return loss_fn(y_pred, y)

        losses = [
            float(train_step(model, [(s.X_train, s.y_train)], counted, optimizer))
            for _ in range(12)
        ]
        counts.append(calls[0])
        trained.append((model.state_dict(), losses))
    ours, theirs = trained
    assert ours[1] == theirs[1]
    assert all(torch.equal(v, theirs[0][k]) for k, v in ours[0].items())
    assert counts[0] <= counts[1] - 10  # one evaluation saved in (nearly) every step


def test_lbfgs_reaches_the_closed_form_optimum_in_a_few_epochs():
    s = _table_like()
    torch.manual_seed(0)
    model = LinearRegressionModelV2(4)
    history = fit(
        model,
        s.X_train,
        s.y_train,
        s.X_test,
        s.y_test,
        make_loss("mse"),
        make_optimizer("lbfgs", model.parameters(), lr=1.0),
        500,
        tol=1e-6,
        log=None,
    )
    exact = least_squares(s.X_train, s.y_train)
    assert history.converged and history.epochs_run < 60
    assert torch.allclose(model.linear_layer.weight.T.double(), exact.weight, atol=1e-4)
    assert (
        mse(model(s.X_test).detach(), s.y_test) <= mse(exact.predict(s.X_test), s.y_test) * 1.0001
    )


def test_tol_stops_when_the_training_loss_stops_improving_and_says_so():
    s = _table_like()
    torch.manual_seed(0)
    model = LinearRegressionModelV2(4)
    lines = []
    history = fit(
        model,
        s.X_train,
        s.y_train,
        s.X_test,
        s.y_test,
        make_loss("mse"),
        make_optimizer("adam", model.parameters(), lr=0.05),
        2000,
        tol=1e-4,
        tol_epochs=5,
        log=lines.append,
    )
    assert history.converged and not history.stopped_early
    assert 20 < history.epochs_run < 2000
    assert history.records[-1]["epoch"] == history.epochs_run - 1  # the last epoch is logged
    assert lines[-1].startswith(f"Converged at epoch {history.epochs_run - 1}: ")
    losses = history.column("train_loss")
    assert losses[-1] < losses[0] / 10


def test_convergence_stops_training_while_early_stopping_waits():
    # lr 0: the training loss is flat (converged after tol_epochs) and the validation loss
    # never falls again, so early stopping's count of bad epochs grows but stays under its
    # patience: that must not cancel the convergence stop.
    X, y = make_line()
    s = split(X, y, train=0.6, val=0.2, test=0.2)
    torch.manual_seed(42)
    model = LinearRegressionModel()
    history = fit(
        model,
        s.X_train,
        s.y_train,
        s.X_test,
        s.y_test,
        make_loss("l1"),
        make_optimizer("sgd", model.parameters(), lr=0.0),
        100,
        X_val=s.X_val,
        y_val=s.y_val,
        patience=50,
        tol=1e-4,
        tol_epochs=3,
        log=None,
    )
    assert history.converged and history.epochs_run == 4


def test_without_tol_every_epoch_runs():
    s = _table_like()
    torch.manual_seed(0)
    model = LinearRegressionModelV2(4)
    optimizer = make_optimizer("lbfgs", model.parameters(), lr=1.0)
    history = fit(
        model, s.X_train, s.y_train, s.X_test, s.y_test, make_loss("mse"), optimizer, 80, log=None
    )
    assert history.epochs_run == 80 and not history.converged


@pytest.mark.parametrize(("tol", "tol_epochs"), [(-1e-4, 10), (float("nan"), 10), (1e-4, 0)])
def test_a_bad_tolerance_is_one_clear_error(tol, tol_epochs):
    s = _table_like(rows=100)
    model = LinearRegressionModelV2(4)
    optimizer = make_optimizer("sgd", model.parameters())
    with pytest.raises(TorchworkError, match="tol must be 0"):
        fit(
            model,
            s.X_train,
            s.y_train,
            s.X_test,
            s.y_test,
            make_loss("mse"),
            optimizer,
            5,
            tol=tol,
            tol_epochs=tol_epochs,
            log=None,
        )


def test_feature_major_inputs_hold_the_same_values():
    from torchwork.engine import feature_major

    X = torch.randn(10_000, 7)
    stored = feature_major(X)
    assert torch.equal(stored, X) and stored.stride() == (1, 10_000)
    small = torch.randn(10, 7)
    assert feature_major(small) is small


def test_linear_model_with_one_output_predicts_as_nn_linear():
    model = LinearRegressionModelV2(6)
    X = torch.randn(500, 6)
    with torch.no_grad():
        assert torch.allclose(model(X), model.linear_layer(X), atol=1e-6)
    assert model(X).shape == (500, 1)


def test_training_does_not_import_torch_compile():
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from torchwork import build_model, make_loss, make_optimizer, train_step\n"
        "for name in ('lbfgs', 'sgd', 'adam', 'adamw'):\n"
        "    model = build_model('mlp', 3, 1, [4])\n"
        "    optimizer = make_optimizer(name, model.parameters())\n"
        "    X, y = torch.randn(50, 3), torch.randn(50, 1)\n"
        "    train_step(model, [(X, y)], make_loss('mse'), optimizer)\n"
        "    optimizer.load_state_dict(optimizer.state_dict())\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_train_step_updates_exactly_as_optimizer_step_and_runs_step_hooks(name):
    X, y = torch.randn(64, 3, generator=torch.Generator().manual_seed(0)), torch.randn(64, 1)
    results = []
    for plain in (False, True):
        torch.manual_seed(0)
        model = build_model("mlp", 3, 1, [8])
        optimizer = make_optimizer(name, model.parameters(), lr=0.01)
        loss_fn = make_loss("mse")
        for _ in range(5):
            if plain:
                loss = loss_fn(model(X), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            else:
                train_step(model, [(X, y)], loss_fn, optimizer)
        results.append(model.state_dict())
    assert all(torch.equal(v, results[1][k]) for k, v in results[0].items())
    calls = []
    optimizer.register_step_post_hook(lambda *_: calls.append(1))
    train_step(model, [(X, y)], loss_fn, optimizer)
    assert calls == [1]
