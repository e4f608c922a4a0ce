import pytest

from torchwork import RunConfig, TorchworkError


def test_toml_round_trip():
    config = RunConfig()
    config.train.lr = 0.05
    config.model.hidden = [8, 4]
    config.data.shuffle = True
    again = RunConfig.from_toml(config.to_toml())
    assert again == config


def test_integers_are_accepted_for_numbers():
    config = RunConfig.from_toml("[train]\nlr = 1\n")
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[train]\nlearning_rate = 0.1\n", "unknown key 'learning_rate' in [train]"),
        ("[training]\nlr = 0.1\n", "unknown key 'training'"),
        ("[train]\nepochs = 'many'\n", "'train.epochs' in config must be a whole number"),
        ("[train]\nepochs = 1.5\n", "must be a whole number"),
        ("[model]\nhidden = 64\n", "must be a list"),
        ("train = 3\n", "must be a table"),
        ("[train\n", "not valid TOML"),
    ],
)
def test_bad_toml_is_one_clear_error(text, message):
    with pytest.raises(TorchworkError, match=message.replace("[", r"\[").replace("]", r"\]")):
        RunConfig.from_toml(text)


@pytest.mark.parametrize(
    ("section", "key", "value", "flag"),
    [
        ("data", "step", 0.0, "--step"),
        ("data", "start", 2.0, "--start"),
        ("data", "test", 0.5, "add up to"),
        ("train", "epochs", 0, "--epochs"),
        ("train", "lr", -1.0, "--lr"),
        ("train", "loss", "hinge", "unknown loss"),
        ("model", "kind", "resnet", "unknown model"),
        ("train", "patience", 3, "needs a validation split"),
    ],
)
def test_validate_names_the_flag_to_change(section, key, value, flag):
    config = RunConfig()
    setattr(getattr(config, section), key, value)
    with pytest.raises(TorchworkError, match=flag):
        config.validate()


def table_config(**overrides):
    return RunConfig.layered({}, {"data.path": "t.csv", **overrides})


def test_a_table_gets_auto_training_settings_and_a_tolerance():
    config = table_config()
    t = config.train
    assert (t.optimizer, t.lr, t.batch_size, t.epochs, t.tol) == ("auto", "auto", "auto", 500, 1e-4)
    assert RunConfig.layered({}, {}).train.tol == 0.0  # the line: the course, every epoch


def test_epochs_given_are_honoured_exactly():
    assert table_config(**{"train.epochs": 50}).train.tol == 0.0
    assert table_config(**{"train.epochs": 50, "train.tol": 1e-3}).train.tol == 1e-3
    from_file = RunConfig.layered({"data": {"path": "t.csv"}, "train": {"epochs": 50}})
    assert from_file.train.tol == 0.0


@pytest.mark.parametrize(
    ("kind", "rows", "given", "expected"),
    [
        ("linear", 160_000, {}, ("lbfgs", 1.0, 0)),
        ("linear", 50, {}, ("lbfgs", 1.0, 0)),
        ("linear", 160_000, {"train.batch_size": 128}, ("adam", 0.01, 128)),
        ("linear", 160_000, {"train.optimizer": "adam"}, ("adam", 0.01, 0)),
        ("mlp", 140_000, {}, ("adam", 0.003, 1024)),
        ("mlp", 7_000, {}, ("adam", 0.0011, 128)),  # at least 32 steps an epoch
        ("mlp", 2_000, {}, ("adam", 0.00053, 32)),
        ("mlp", 40, {}, ("adam", 0.01, 0)),
        ("mlp", 140_000, {"train.lr": 0.02, "train.batch_size": 0}, ("adam", 0.02, 0)),
        ("mlp", 140_000, {"train.optimizer": "lbfgs"}, ("lbfgs", 1.0, 0)),
    ],
)
def test_choose_training_picks_by_model_and_rows_and_every_flag_wins(kind, rows, given, expected):
    from torchwork.config import choose_training

    config = table_config(**{"model.kind": kind, **given})
    why = choose_training(config, rows)
    t = config.train
    assert (t.optimizer, t.lr, t.batch_size) == expected
    assert set(why) == {
        k.split(".")[1] for k in ("train.optimizer", "train.lr", "train.batch_size")
    } - {k.split(".")[1] for k in given}
    assert choose_training(config, rows) == {}  # nothing is auto any more
    assert RunConfig.from_toml(config.to_toml()).train == t  # and config.toml says so


def test_an_mlp_on_a_table_holds_out_validation_rows_and_stops_early():
    config = table_config(**{"model.kind": "mlp"})
    assert (config.data.train, config.data.val, config.data.test) == (0.7, 0.1, 0.2)
    assert config.train.patience == 10
    mine = table_config(**{"model.kind": "mlp", "data.train": 0.8, "data.val": 0.0})
    assert (mine.data.val, mine.train.patience) == (0.0, 0)


@pytest.mark.parametrize(
    ("key", "value", "flag"),
    [
        ("lr", "fast", "--lr must be greater than 0, or auto"),
        ("batch_size", "big", "--batch-size must be 0"),
        ("batch_size", -1, "--batch-size must be 0"),
        ("tol", -1e-4, "--tol must be 0 (off)"),
        ("tol", float("inf"), "--tol must be 0 (off)"),
        ("tol_epochs", 0, "--tol-epochs must be at least 1"),
        ("optimizer", "rmsprop", "unknown optimizer 'rmsprop'"),
    ],
)
def test_bad_training_settings_name_the_flag(key, value, flag):
    config = RunConfig()
    setattr(config.train, key, value)
    with pytest.raises(TorchworkError, match=flag.replace("(", r"\(").replace(")", r"\)")):
        config.validate()


def test_lbfgs_with_minibatches_is_refused():
    config = RunConfig()
    config.train.optimizer, config.train.batch_size = "lbfgs", 32
    with pytest.raises(TorchworkError, match="--optimizer lbfgs trains on the full batch"):
        config.validate()


def test_auto_values_round_trip_through_toml():
    config = table_config()
    again = RunConfig.from_toml(config.to_toml())
    assert (again.train.lr, again.train.batch_size) == ("auto", "auto")


def test_momentum_is_sgds_and_refused_with_another_optimizer():
    config = RunConfig()
    config.train.optimizer, config.train.momentum = "adam", 0.9
    with pytest.raises(TorchworkError, match="--momentum is SGD's"):
        config.validate()
    with pytest.raises(TorchworkError, match="--momentum is SGD's"):
        RunConfig.from_toml("[train]\noptimizer = 'adam'\nmomentum = 0.9\n").validate()
    with pytest.raises(TorchworkError, match="--momentum is SGD's"):
        RunConfig.layered({}, {"data.path": "t.csv", "train.momentum": 0.9}).validate()
    RunConfig.from_toml("[train]\noptimizer = 'sgd'\nmomentum = 0.9\n").validate()
    # A model file from before the rule stays readable: the run is over, momentum unused.
    config.validate(stored=True)


def test_a_stored_config_is_held_to_the_limits_of_run():
    from torchwork.config import stored_config

    with pytest.raises(TorchworkError, match=r"m\.safetensors holds a config .* 1e\+09 rows"):
        stored_config({"data": {"step": 1e-9}}, "m.safetensors")
    with pytest.raises(TorchworkError, match="300,010 layers, more than 100"):
        stored_config({"model": {"hidden": [1] * 300_010}}, "m.safetensors")
    for bad in ({"model": {"kind": "x\n" * 100_000}}, {"data": {"x" * 100_000: 1}}):
        with pytest.raises(TorchworkError) as error:
            stored_config(bad, "m.safetensors")
        assert len(str(error.value)) < 400 and "\n" not in str(error.value)
    assert stored_config({"train": {"epochs": 7}}, "m.safetensors").train.epochs == 7


def test_more_hidden_layers_than_a_small_mlp_are_refused():
    config = RunConfig()
    config.model.hidden = [8] * 101
    with pytest.raises(TorchworkError, match="--hidden gives 101 layers"):
        config.validate()


def test_an_mlp_on_a_small_table_holds_out_more_validation_rows():
    from torchwork.config import MLP_SMALL_SPLIT, MLP_SPLIT, choose_split

    mlp = {"data.path": "t.csv", "model.kind": "mlp"}
    config = RunConfig.layered(overrides=mlp)
    assert (config.data.train, config.data.val) == MLP_SPLIT
    assert "--val 0.2" in choose_split(config, 442)
    assert (config.data.train, config.data.val) == MLP_SMALL_SPLIT
    assert choose_split(config, 442) == ""  # chosen once: the config says what was used
    large = RunConfig.layered(overrides=mlp)
    assert choose_split(large, 200_000) == "" and (large.data.train, large.data.val) == MLP_SPLIT
    given = RunConfig.layered(overrides={**mlp, "data.train": 0.7, "data.val": 0.1})
    assert choose_split(given, 442) == "" and given.data.val == 0.1  # a flag wins
