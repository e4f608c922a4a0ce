"""The course notebook's training and testing loop, written out by hand as the course has it:
the trusted answer that tests/test_engine.py and benchmarks/run.py check torchwork against."""

from __future__ import annotations

import torch
from torch import nn

from torchwork import LinearRegressionModel, make_line


def course_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """X_train, y_train, X_test, y_test: the line split 40 / 10 in order."""
    X, y = make_line()
    return X[:40], y[:40], X[40:], y[40:]


def hand_written_course(
    epochs: int,
) -> tuple[LinearRegressionModel, list[tuple[int, float, float]]]:
    """The trained model_0 and (epoch, train loss, test loss) every 10 epochs."""
    X_train, y_train, X_test, y_test = course_data()
    torch.manual_seed(42)
    model_0 = LinearRegressionModel()
    loss_fn = nn.L1Loss()
    optimizer = torch.optim.SGD(params=model_0.parameters(), lr=0.01)
    history = []
    for epoch in range(epochs):
        model_0.train()
        y_pred = model_0(X_train)
        loss = loss_fn(y_pred, y_train)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model_0.eval()
        with torch.inference_mode():
            test_pred = model_0(X_test)
            test_loss = loss_fn(test_pred, y_test.type(torch.float))
        if epoch % 10 == 0:
            history.append((epoch, loss.item(), test_loss.item()))
    return model_0, history
