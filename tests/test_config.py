import pytest

from torchwork import RunConfig, TorchworkError
from torchwork.settings import config_from


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
    assert (t.optimizer, t.lr, t.batch_size, t.epochs, t.tol) == (
        "auto",
        "auto",
        "auto",
        500,
        "auto",
    )
    assert RunConfig.layered({}, {}).train.tol == 0.0  # the line: the course, every epoch
    from torchwork.config import AUTO_TOL, choose_training

    choose_training(config, 1000)  # L-BFGS converges to a tighter tolerance than Adam
    assert (t.optimizer, t.tol) == ("lbfgs", AUTO_TOL["lbfgs"])
    mlp = table_config(**{"model.kind": "mlp"})
    choose_training(mlp, 1000)
    assert (mlp.train.optimizer, mlp.train.tol) == ("adam", AUTO_TOL["otherwise"])


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


# --- torchwork.run's settings by name: the command line's flags as keywords ------------------


def from_flags(*flags: str) -> RunConfig:
    from torchwork.cli.parser import build_parser, config_from_args

    return config_from_args(build_parser().parse_args(["run", *flags]))


@pytest.mark.parametrize(
    ("settings", "flags"),
    [
        ({}, ""),
        ({"epochs": 100}, "--epochs 100"),
        ({"data": "iris.csv", "target": "species"}, "--data iris.csv --target species"),
        (
            {
                "data": "t.csv",
                "model": "mlp",
                "hidden": [32, 32],
                "lr": 0.01,
                "val": 0.2,
                "train": 0.6,
            },
            "--data t.csv --model mlp --hidden 32,32 --lr 0.01 --val 0.2 --train 0.6",
        ),
        (
            {"data": "t.csv", "epochs": 50, "batch_size": "auto", "kind": ["review=text"]},
            "--data t.csv --epochs 50 --batch-size auto --kind review=text",
        ),
        (
            {"data": "t.csv", "no_plots": True, "folds": 5, "out": "runs/x", "no_scale": True},
            "--data t.csv --no-plots --folds 5 --out runs/x --no-scale",
        ),
        ({"plots": False, "shuffle": True}, "--no-plots --shuffle"),
        ({"threads": 2, "na_values": ["?"]}, "--threads 2 --na-values ?"),
    ],
)
def test_settings_by_name_make_the_config_the_flags_make(settings, flags):
    assert config_from(**settings) == from_flags(*flags.split())


def test_a_table_by_name_gets_the_table_defaults_not_the_lines():
    config = config_from(data="iris.csv", target="species")
    assert (config.model.kind, config.train.loss, config.train.optimizer) == (
        "linear",
        "auto",
        "auto",
    )
    assert config.data.target == "species" and config.train.tol == "auto"


def test_every_flag_of_run_is_a_setting_and_every_setting_a_flag():
    from torchwork.cli.parser import RUN_FLAGS
    from torchwork.config import field_hint
    from torchwork.settings import SETTINGS, setting_name

    assert {setting_name(flag): field for flag, field, _, _ in RUN_FLAGS} == SETTINGS
    for name, field in SETTINGS.items():
        if name.startswith("no_"):  # it turns a field of its own name off
            assert field.rpartition(".")[2] == name[3:]
            assert field_hint(*field.rpartition(".")[::2]) is bool


def test_values_by_name_are_converted_as_the_flags_are(tmp_path):
    np = pytest.importorskip("numpy")
    config = config_from(
        data=tmp_path / "t.csv",
        epochs=np.int64(20),
        lr=np.float64(0.5),
        momentum=0,
        hidden="16,8",
        features=("a", "b"),
        exclude="id",
        batch_size="32",
        threshold="auto",
        val=0.2,
        train=0.6,
        target=None,  # None: the default, as a flag not given
    )
    assert config.data.path == str(tmp_path / "t.csv") and config.data.target == ""
    assert (config.train.epochs, config.train.lr, config.train.momentum) == (20, 0.5, 0.0)
    assert type(config.train.epochs) is int and type(config.train.lr) is float
    assert config.model.hidden == [16, 8] and config_from(hidden=32).model.hidden == [32]
    assert (config.data.features, config.data.exclude) == (["a", "b"], ["id"])
    assert (config.train.batch_size, config.threshold) == (32, "auto")


def test_a_runconfig_still_runs_as_given_with_settings_over_it():
    given = RunConfig()
    given.train.epochs = 7
    assert config_from(given) == given
    over = config_from(given, lr=0.1, no_plots=True)
    assert (over.train.epochs, over.train.lr, over.plots) == (7, 0.1, False)
    assert given.train.lr == 0.01 and given.plots  # the RunConfig itself is left alone


@pytest.mark.parametrize(
    ("config", "fragments"),
    [
        (
            lambda: RunConfig(data="iris.csv"),
            ["RunConfig's data must be a DataConfig", "torchwork.run(data='iris.csv')"],
        ),
        (lambda: RunConfig(model="mlp"), ["torchwork.run(model='mlp')"]),
        (lambda: RunConfig(train={"epochs": 5}), ["TrainConfig", "torchwork.run(data="]),
        (lambda: "iris.csv", ["a .toml config file", "torchwork.run(data='iris.csv')"]),
    ],
)
def test_a_config_of_the_wrong_shape_says_what_to_write_instead(config, fragments):
    import torchwork
    from torchwork import ConfigError

    with pytest.raises(ConfigError) as error:
        torchwork.run(config(), log=lambda _: None)
    message = str(error.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_a_runconfig_field_of_the_wrong_type_is_a_config_error():
    from torchwork import ConfigError, TrainConfig

    with pytest.raises(ConfigError, match="'train.epochs' in the RunConfig must be a whole"):
        config_from(RunConfig(train=TrainConfig(epochs="100")))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"epoch": 100}, "unknown setting 'epoch': did you mean epochs=?"),
        ({"learning_rate": 0.1}, "did you mean lr=?"),
        ({"no_plot": True}, "did you mean no_plots=?"),
        ({"batchsize": 8}, "did you mean batch_size=?"),
        ({"xyzzy": 1}, "the settings are the flags of torchwork run"),
        ({"resume": "runs/a"}, "torchwork.resume(folder)"),
    ],
)
def test_an_unknown_setting_names_the_closest(settings, message):
    import torchwork
    from torchwork import ConfigError

    with pytest.raises(ConfigError) as error:
        torchwork.run(log=lambda _: None, **settings)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"loss": "nope"}, "unknown loss 'nope': use loss=auto or l1"),
        ({"model": "resnet"}, "unknown model 'resnet': use model=params"),
        ({"epochs": "many"}, "epochs must be a whole number (got 'many')"),
        ({"epochs": 1.5}, "epochs must be a whole number (got 1.5)"),
        ({"epochs": 0}, "epochs must be at least 1 (got 0)"),
        ({"lr": "fast"}, "lr must be greater than 0, or auto"),
        ({"hidden": [8, "x"]}, "hidden must be whole numbers"),
        ({"no_plots": "yes"}, "no_plots must be True or False"),
        ({"patience": 3}, "patience needs a validation split: add val, for example train=0.7"),
        ({"calibrate": True}, "calibrate=True is fitted on a validation split"),
        ({"optimizer": "adam", "momentum": 0.9}, "drop momentum or use optimizer=sgd"),
        ({"plots": False, "no_plots": True}, "plots= and no_plots= are the same setting"),
        ({"data": object()}, "data must be the path of a table file or a folder"),
    ],
)
def test_a_bad_value_by_name_is_a_config_error_naming_the_keyword(settings, message):
    import torchwork
    from torchwork import ConfigError

    with pytest.raises(ConfigError) as error:
        torchwork.run(log=lambda _: None, **settings)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_toml_file_is_the_first_layer_as_with_config(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[data]\npath = "t.csv"\n[train]\nepochs = 50\n')
    config = config_from(path, lr=0.05)
    assert config == from_flags("--config", str(path), "--lr", "0.05")
    assert (config.train.epochs, config.train.lr, config.train.tol) == (50, 0.05, 0.0)


def test_any_value_of_any_setting_is_a_config_error_of_one_line_naming_it():
    from torchwork import ConfigError
    from torchwork.settings import KEYWORDS

    odd = [None, "", "abc", "auto", "1,2", " 5 ", -1, 0, 2**70, float("nan"), float("inf")]
    odd += [True, [1], ["a"], [], (1, 2), {"a": 1}, b"x", object()]
    for name in KEYWORDS:
        for value in odd:
            try:
                config_from(**{"data": "t.csv", name: value})
            except ConfigError as e:
                message = str(e)
                assert "\n" not in message, (name, value, message)
                assert name in message or "the line would have" in message, (name, value, message)
