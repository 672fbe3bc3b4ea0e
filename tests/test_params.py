"""params.yaml validation: every bad value is named with its key and what is allowed."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from conftest import run_stage, write_params
from initstudy.params import ParamsError, load_params, parse_params, small_sample_warnings

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = yaml.safe_load((ROOT / "params.yaml").read_text())


def problems(**changes: object) -> str:
    """Apply `section__key=value` changes to the defaults; return the validation message."""
    raw = copy.deepcopy(DEFAULTS)
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        raw[section][key] = value
    with pytest.raises(ParamsError) as info:
        parse_params(raw, sizes=True)  # as check_params does
    return str(info.value)


def test_the_committed_params_are_the_classic_study() -> None:
    params = load_params(ROOT / "params.yaml")
    assert params.study.networks == ["mlp"]
    assert params.networks["mlp"].hidden_units == [256, 128]
    assert params.networks["mlp"].dropout == 0.2 and params.networks["mlp"].activation == "relu"
    assert (params.train.optimizer, params.train.batch_size, params.train.epochs) == ("adam", 128, 20)
    assert params.train.learning_rate == 0.001
    assert len(params.study.initializers) == 12 and params.study.seeds == [0, 1, 2]


def test_unknown_initializer_suggests_the_closest_name() -> None:
    message = problems(study__initializers=["glorot_uniform", "he_normall"])
    assert "study.initializers[1] = 'he_normall'" in message
    assert "Did you mean 'he_normal'?" in message
    assert ", lecun_uniform, " in message  # the defined labels are listed


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("train__optimizer", "adamw", "train.optimizer = 'adamw': Input should be 'adam' or 'sgd'"),
        ("networks__mlp", {"hidden_units": [256, 128], "activation": "rellu"}, "Did you mean 'relu'?"),
        ("data__name", "mnits", "data.name = 'mnits'"),
        ("train__backend", "torch", "train.backend = 'torch'"),
        ("train__epochs", 0, "train.epochs = 0: Input should be greater than 0"),
        ("train__batch_size", -1, "train.batch_size = -1: Input should be greater than 0"),
        ("train__learning_rate", 0, "train.learning_rate = 0: Input should be greater than 0"),
        ("train__learning_rate", "fast", "train.learning_rate = 'fast': Input should be a valid number"),
        ("train__learning_rate", True, "train.learning_rate = True: Input should be a number, not true or false"),
        ("train__learning_rate", float("inf"), "train.learning_rate = inf: Input should be a finite number"),
        ("networks__mlp", {"hidden_units": [256, 128], "dropout": True}, "networks.mlp.dropout = True: Input should be a number, not true or false"),
        ("networks__mlp", {"hidden_units": [256, 128], "residual": True},
         "networks.mlp: hidden_units: a residual mlp adds each branch to its input, so every hidden layer has the same width; not [256, 128]"),
        ("networks__mlp", {"hidden_units": [64] * 4, "residual": True, "branch_layers": 2},
         "1 + a multiple of 2 hidden layers (at least 3); not 4"),
        ("networks__mlp", {"hidden_units": [64], "residual": True}, "(at least 2); not 1"),
        ("networks__mlp", {"hidden_units": [64] * 3, "branch_scale": 0.0},
         "networks.mlp: branch_scale: only for a residual mlp; set residual: true, or remove them"),
        ("networks__mlp", {"family": "cnn", "conv_filters": [8], "hidden_units": [64] * 3, "residual": True},
         "residual blocks are dense layers; a cnn has none"),
        ("networks__mlp", {"hidden_units": [64] * 3, "residual": True, "branch_layers": 3},
         "networks.mlp.branch_layers = 3: Input should be less than or equal to 2"),
        ("networks__mlp", {"hidden_units": [64] * 3, "residual": True, "branch_layers": True},
         "networks.mlp.branch_layers = True: Input should be a valid integer"),
        ("networks__mlp", {"hidden_units": [64] * 3, "residual": True, "branch_scale": -1},
         "networks.mlp.branch_scale = -1: Input should be greater than or equal to 0"),
        ("networks__mlp", {"hidden_units": [256, 128], "normalization": "group"}, "networks.mlp.normalization = 'group': Input should be 'none', 'batch' or 'layer'"),
        ("train__nesterov", "yes", "train.nesterov = 'yes': Input should be a valid boolean"),
        ("study__seeds", [0, True], "study.seeds[1] = True: Input should be a valid integer"),
        ("networks__mlp", {"hidden_units": [256, 128], "dropout": 1.0}, "networks.mlp.dropout = 1.0: Input should be less than 1"),
        ("networks__mlp", {"hidden_units": [256, 128], "dropout": -0.1}, "networks.mlp.dropout = -0.1"),
        ("networks__mlp", {"hidden_units": []}, "networks.mlp.hidden_units = []: List should have at least 1 item"),
        ("networks__mlp", {"hidden_units": [256, 0]}, "networks.mlp.hidden_units[1] = 0: Input should be greater than 0"),
        ("networks__mlp", {"family": "cnn", "hidden_units": [256], "conv_filters": [32, -1]}, "networks.mlp.conv_filters[1] = -1: Input should be greater than 0"),
        ("networks__mlp", {"hidden_units": [2**31]}, "networks.mlp.hidden_units[0] = 2147483648: Input should be less than or equal to 2147483647"),
        ("train__batch_size", 2**63, "train.batch_size = 9223372036854775808: Input should be less than or equal to"),
        ("train__epochs", 2**31, "train.epochs = 2147483648: Input should be less than or equal to 2147483647"),
        ("plots__dpi", 5, "plots.dpi = 5: Input should be greater than or equal to 10"),
        ("plots__dpi", 1001, "plots.dpi = 1001: Input should be less than or equal to 1000"),
        ("initializers__n", {"name": "constant", "value": 1e5}, "initializers.n.value = 100000.0: Input should be less than or equal to 10000"),
        ("initializers__n", {"name": "random_uniform", "minval": -1e5}, "initializers.n.minval = -100000.0: Input should be greater than or equal to -10000"),
        ("initializers__n", {"name": "orthogonal", "gain": 1e5}, "initializers.n.gain = 100000.0"),
        ("initializers__n", {"name": "variance_scaling", "scale": 1e9}, "initializers.n.scale = 1000000000.0"),
        ("initializers__n", {"name": "lsuv", "batch_size": 0}, "initializers.n.batch_size = 0: Input should be greater than 0"),
        ("networks__mlp", {"hidden_units": [256, 128], "family": "rnn"}, "networks.mlp.family = 'rnn': Input should be 'mlp' or 'cnn'"),
        ("networks__mlp", {"hidden_units": [256, 128], "bias_initializer": "orthogonal"}, "orthogonal needs a matrix; a bias is a vector"),
        ("train__momentum", 1.5, "train.momentum = 1.5: Input should be less than 1"),
        ("data__name", "cifar100", "Did you mean 'cifar10'?"),
        ("data__checksums", {"a.gz": "sha1:00"}, "data.checksums.a.gz = 'sha1:00'"),
        ("data__checksums", {"cifar-10-python.tar.gz": "md5:" + "0" * 32},
         "data.checksums: cifar-10-python.tar.gz is not a file of mnist (train-images-idx3-ubyte.gz, "),
        ("initializers__n", {"name": "random_normal", "stddev": -1}, "initializers.n.stddev = -1: Input should be greater than 0"),
        ("initializers__n", {"name": "random_normall"}, "initializers.n.name = 'random_normall': unknown initializer"),
        ("initializers__n", {"name": "variance_scaling", "mode": "fan_out", "distribution": "gaussian"},
         "initializers.n.distribution = 'gaussian'"),
        ("initializers__n", {"name": "random_uniform", "minval": 1, "maxval": 0}, "minval (1.0) must be below maxval"),
        ("initializers__n", {"name": "lsuv", "tolerance": 0}, "initializers.n.tolerance = 0"),
        ("networks__mlp", {"hidden_units": [256, 1.5]}, "networks.mlp.hidden_units[1] = 1.5"),
        ("study__initializers", [], "study.initializers = []"),
        ("study__seeds", [], "study.seeds = []"),
        ("study__seeds", [0, 1, 0], "repeated: 0"),
        ("study__initializers", ["zeros", "zeros"], "repeated: zeros"),
        ("study__seeds", [0, -1], "seeds must be integers from 0 to 2**32 - 1, the seeds NumPy and Keras take; not -1"),
        ("study__seeds", [2**32, 0, 2**40], "study.seeds = [4294967296, 0, 1099511627776]: seeds must be integers "
         "from 0 to 2**32 - 1, the seeds NumPy and Keras take; not 4294967296, 1099511627776"),
        ("study__seeds", [0, "1"], "study.seeds[1] = '1': Input should be a valid integer"),
        ("data__train_samples", 0, "data.train_samples = 0"),
    ],
)
def test_bad_values_name_key_value_and_rule(key: str, value: object, expected: str) -> None:
    assert expected in problems(**{key: value})


def test_misspelt_key_is_unknown_and_the_real_one_missing() -> None:
    raw = copy.deepcopy(DEFAULTS)
    raw["train"]["epoch"] = raw["train"].pop("epochs")
    with pytest.raises(ParamsError) as info:
        parse_params(raw)
    message = str(info.value)
    assert "train.epochs: missing required key" in message
    assert "train.epoch: unknown key" in message and "Did you mean 'epochs'?" in message


def test_the_reference_initializer_must_be_studied() -> None:
    message = problems(study__initializers=["zeros", "he_normal"])
    assert "analysis.reference = 'glorot_uniform' is not one of study.initializers (zeros, he_normal)" in message
    assert problems(analysis__target_accuracy=1.5).count("analysis.target_accuracy = 1.5") == 1


def test_every_problem_is_reported_at_once() -> None:
    message = problems(train__epochs=0, networks__mlp={"hidden_units": [8], "dropout": 2})
    assert "train.epochs" in message and "networks.mlp.dropout" in message


def test_single_key_and_cross_key_problems_are_reported_in_one_pass() -> None:
    """A tiny study with four mistakes, two of them between sections: all four at once."""
    message = problems(train__epochs=0, study__initializers=["zeros", "he_normall"],
                       data__train_samples=500, diagnostics__batch_size=1000)
    lines = message.splitlines()[1:]
    assert len(lines) == 4, message
    assert "train.epochs = 0: Input should be greater than 0" in message
    assert "study.initializers[1] = 'he_normall': not a label under initializers" in message
    assert "Did you mean 'he_normal'?" in message
    assert "analysis.reference = 'glorot_uniform' is not one of study.initializers (zeros, he_normall)" in message
    assert "diagnostics.batch_size = 1000: more than the 500 training images (data.train_samples)" in message


def test_a_rule_between_sections_is_skipped_while_one_of_them_is_invalid() -> None:
    message = problems(study__initializers="zeros", analysis__reference="nowhere")
    assert "study.initializers = 'zeros': Input should be a valid list" in message
    assert "analysis.reference = 'nowhere': not a label under initializers" not in message  # it needs the study
    assert len(message.splitlines()) == 2


def test_unreadable_yaml_is_a_params_error(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("train: [unclosed\n")
    with pytest.raises(ParamsError, match="cannot read"):
        load_params(path)


def test_an_unknown_argument_of_an_initializer_lists_its_arguments() -> None:
    message = problems(initializers__n={"name": "random_normal", "stdev": 0.01})
    assert "initializers.n.stdev: unknown key; allowed here: name, mean, stddev. Did you mean 'stddev'?" in message


def test_labels_default_to_the_initializer_of_that_name_and_carry_arguments() -> None:
    raw = copy.deepcopy(DEFAULTS)
    raw["initializers"] = {"he_normal": {}, "glorot_uniform": None, "small": {"name": "random_normal", "stddev": 0.01}}
    raw["study"]["initializers"] = ["he_normal", "small", "glorot_uniform"]
    params = parse_params(raw)
    assert params.initializers["he_normal"].name == "he_normal"
    assert params.initializers["glorot_uniform"].name == "glorot_uniform"
    assert params.initializers["small"].arguments() == {"mean": 0.0, "stddev": 0.01}


def test_a_label_must_be_usable_as_a_stage_name_and_params_key() -> None:
    message = problems(**{"initializers__normal-0.01": {"name": "random_normal", "stddev": 0.01}})
    assert "initializers: labels may hold only letters, digits and '_'" in message and "normal-0.01" in message


def test_study_labels_must_be_defined_and_identity_needs_an_mlp() -> None:
    message = problems(study__initializers=["glorot_uniform", "lsvu"])
    assert "study.initializers[1] = 'lsvu': not a label under initializers" in message
    assert "Did you mean 'lsuv'?" in message
    message = problems(study__networks=["mlp", "mlp_smal"])
    assert "study.networks[1] = 'mlp_smal': not a label under networks" in message
    assert "Did you mean 'mlp_small'?" in message
    raw = copy.deepcopy(DEFAULTS)
    raw["study"]["networks"] = ["mlp", "cnn_small"]
    with pytest.raises(ParamsError, match=r"identity \(identity\) needs 2-D kernels; networks.cnn_small is a cnn"):
        parse_params(raw)


@pytest.mark.parametrize(("dataset", "most"), [("mnist", 4), ("cifar10", 5)])
def test_a_cnn_may_not_pool_its_images_away(dataset: str, most: int) -> None:
    raw = copy.deepcopy(DEFAULTS)
    raw["data"]["name"] = dataset
    raw["study"]["networks"] = ["cnn_small"]
    raw["study"]["initializers"] = [raw["analysis"]["reference"], "he_normal"]
    raw["networks"]["cnn_small"]["conv_filters"] = [8] * most
    assert parse_params(raw).networks["cnn_small"].conv_filters == [8] * most
    raw["networks"]["cnn_small"]["conv_filters"] = [8] * (most + 1)
    with pytest.raises(ParamsError, match=rf"networks.cnn_small.conv_filters = \[8(, 8)*\]: each block halves the image, "
                       rf"and {dataset}'s .* allow at most {most} blocks"):
        parse_params(raw)


def test_a_network_is_a_layer_list_or_width_times_depth_with_defaults() -> None:
    raw = copy.deepcopy(DEFAULTS)
    raw["networks"]["deep"] = {"hidden_units": {"width": 16, "depth": 5}, "activation": "tanh"}
    network = parse_params(raw).networks["deep"]
    assert network.hidden_units == [16] * 5 and network.activation == "tanh"
    assert (network.family, network.dropout, network.normalization, network.residual, network.bias_initializer.name) == ("mlp", 0, "none", False, "zeros")
    for value, message in [({"width": 16, "depth": 0}, "depth = 0: a whole number of hidden layers from 1 to 1000"),
                           ({"width": 16}, "a list of layer sizes, or {width: <units>, depth: <layers>}"),
                           ({"width": 0, "depth": 2}, "networks.deep.hidden_units")]:
        assert message in problems(networks__deep={"hidden_units": value})
    assert "conv_filters: an mlp has no convolutions" in problems(networks__deep={"hidden_units": [8], "conv_filters": [4]})
    assert "networks.deep.activaton: unknown key" in problems(networks__deep={"hidden_units": [8], "activaton": "relu"})


def test_probes_name_epochs_of_the_training() -> None:
    assert "probes.epochs: 21 beyond train.epochs (20)" in problems(probes__epochs=[0, 21])
    assert "probes.epochs = [0, -1]" in problems(probes__epochs=[0, -1])
    assert "probes.batch_size = 0" in problems(probes__batch_size=0)


def test_yaml_exponent_notation_is_a_number() -> None:
    raw = copy.deepcopy(DEFAULTS)
    raw["train"]["learning_rate"] = yaml.safe_load("1e-3")  # YAML 1.1 reads this as a string
    assert parse_params(raw).train.learning_rate == 0.001


def test_momentum_and_nesterov_belong_to_sgd() -> None:
    assert "train.momentum and train.nesterov apply to sgd only" in problems(train__momentum=0.9)
    raw = copy.deepcopy(DEFAULTS)
    raw["train"].update(optimizer="sgd", momentum=0.9, nesterov=True)
    assert parse_params(raw).train.nesterov is True


def test_every_dataset_needs_sources_when_chosen() -> None:
    raw = copy.deepcopy(DEFAULTS)
    raw["data"].update(name="cifar10", sources={"mnist": ["x"]})
    with pytest.raises(ParamsError, match="data.sources.cifar10: no source listed"):
        parse_params(raw)


def test_the_bounds_themselves_are_accepted() -> None:
    raw = copy.deepcopy(DEFAULTS)
    raw["study"]["seeds"] = [0, 2**32 - 1]
    raw["plots"]["dpi"] = 10
    raw["initializers"]["n"] = {"name": "random_normal", "mean": -1e4, "stddev": 1e4}
    params = parse_params(raw)
    assert params.study.seeds == [0, 2**32 - 1] and params.initializers["n"].arguments() == {"mean": -1e4, "stddev": 1e4}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "params.yaml is empty; it needs the sections data, study, initializers, networks, train, probes, "
             "diagnostics, analysis, plots: run from the project's root, or restore it with `git checkout params.yaml`"),
        ("# nothing but a comment\n", "params.yaml is empty"),
        ("- data\n", "params.yaml holds a list, not the sections data, study, "),
        (None, "params.yaml does not exist in "),
    ],
)
def test_an_empty_missing_or_shapeless_params_file_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            content: str | None, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    if content is not None:
        Path("params.yaml").write_text(content)
    with pytest.raises(ParamsError) as info:
        load_params()
    assert str(info.value).startswith(message)


def data_problems(**sections: dict) -> str:
    """The error parse_params raises for the defaults with some keys changed."""
    raw = copy.deepcopy(DEFAULTS)
    for section, values in sections.items():
        raw[section].update(values)
    with pytest.raises(ParamsError) as info:
        parse_params(raw, sizes=True)
    return str(info.value)


def test_more_images_than_the_dataset_has_are_refused_all_at_once() -> None:
    message = data_problems(data={"train_samples": 70000, "val_samples": 10001})
    assert "data.train_samples = 70000: mnist has 60,000 training images" in message
    assert "data.val_samples = 10001: mnist has 10,000 validation images" in message
    assert "cifar10 has 50,000 training images" in data_problems(
        data={"name": "cifar10", "train_samples": 50001}, study={"networks": ["cnn_small"], "initializers": ["glorot_uniform"]})


def test_no_batch_may_hold_more_images_than_training_has() -> None:
    message = data_problems(data={"train_samples": 500}, train={"batch_size": 501},
                            study={"initializers": ["glorot_uniform", "lsuv"]})
    assert "train.batch_size = 501: more than the 500 training images (data.train_samples)" in message
    assert "diagnostics.batch_size = 1000: more than the 500 training images (data.train_samples)" in message
    assert "initializers.lsuv.batch_size = 512: more than the 500 training images" in message
    assert "diagnostics.batch_size = 70000: more than the 60,000 training images (mnist)" in data_problems(
        diagnostics={"batch_size": 70000})


def test_a_mirror_of_ones_own_is_checked_against_train_samples_only() -> None:
    raw = copy.deepcopy(DEFAULTS)
    raw["data"].update(train_samples=70000, checksums={"t10k-labels-idx1-ubyte.gz": "sha256:" + "0" * 64})
    assert small_sample_warnings(parse_params(raw)) == []  # its size is unknown until load_split reads it
    raw["diagnostics"]["batch_size"] = 70001
    with pytest.raises(ParamsError, match="diagnostics.batch_size = 70001: more than the 70,000 training images"):
        parse_params(raw, sizes=True)


def test_too_few_images_for_the_statistics_are_warned_of_by_check_params(tmp_path: Path) -> None:
    assert small_sample_warnings(parse_params(DEFAULTS)) == []
    write_params(tmp_path, data={"val_samples": 1}, diagnostics={"batch_size": 99},
                 initializers={"lsuv": {"batch_size": 1}},
                 study={"initializers": ["glorot_uniform", "lsuv"]})
    result = run_stage(tmp_path, "check_params")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "warning: diagnostics.batch_size = 99: the networks at initialization are measured on fewer than 100 "
        "images, too few to compare initializers",
        "warning: initializers.lsuv.batch_size = 1: LSUV scales each layer on fewer than 100 images, "
        "too few to compare initializers",
        "warning: data.val_samples = 1: validation accuracy is measured on fewer than 100 images, "
        "too few to compare initializers",
    ]
