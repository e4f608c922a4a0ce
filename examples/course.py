"""The course notebook's six steps with the torchwork API (python examples/course.py)."""

from pathlib import Path

import torch

from torchwork import (
    LinearRegressionModel,
    fit,
    least_squares,
    load,
    make_line,
    make_loss,
    make_optimizer,
    plot_loss_curves,
    plot_predictions,
    regression_metrics,
    save,
    split,
)

out = Path("course_example")
out.mkdir(exist_ok=True)

# 1. Data: a straight line with known parameters, split 40 / 10 in order.
weight, bias = 0.7, 0.3
X, y = make_line(weight, bias, start=0, end=1, step=0.02)
X_train, y_train, X_val, y_val, X_test, y_test = split(X, y, train=0.8, test=0.2)
plot_predictions(X_train, y_train, X_test, y_test, path=out / "data.png")

# 2. Model, loss function, optimizer.
torch.manual_seed(42)
model_0 = LinearRegressionModel()
print("Initial parameters:", dict(model_0.state_dict()))  # weights 0.3367, bias 0.1288
loss_fn = make_loss("l1")  # nn.L1Loss()
optimizer = make_optimizer("sgd", model_0.parameters(), lr=0.01)

# 3. Training loop and testing loop, 100 epochs, logged every 10.
history = fit(model_0, X_train, y_train, X_test, y_test, loss_fn, optimizer, epochs=100)
print("Learned parameters:", dict(model_0.state_dict()))  # weights 0.5784, bias 0.3513

# 4. Predictions and evaluation, next to the exact answer.
model_0.eval()
with torch.inference_mode():
    y_preds = model_0(X_test)
print("Test metrics:", regression_metrics(y_preds, y_test))
exact = least_squares(X_train, y_train)
print(f"Closed-form least squares: weight {float(exact.weight):.4f}, bias {float(exact.bias):.4f}")
plot_predictions(X_train, y_train, X_test, y_test, y_preds, path=out / "predictions.png")
plot_loss_curves(
    history.column("epoch"),
    history.column("train_loss"),
    history.column("test_loss"),
    path=out / "loss_curves.png",
)

# 5. Save and load: the loaded model predicts exactly the same.
save(model_0, out / "model_0.pth")
loaded_model_0 = load(out / "model_0.pth", LinearRegressionModel())
with torch.inference_mode():
    loaded_model_preds = loaded_model_0(X_test)
print("Loaded model predicts identically:", bool((y_preds == loaded_model_preds).all()))

# 6. All together: `torchwork run --epochs 100` does every step above in one command.
