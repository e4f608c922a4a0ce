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
        ("model", "kind", "cnn", "unknown model"),
        ("train", "patience", 3, "needs a validation split"),
    ],
)
def test_validate_names_the_flag_to_change(section, key, value, flag):
    config = RunConfig()
    setattr(getattr(config, section), key, value)
    with pytest.raises(TorchworkError, match=flag):
        config.validate()
