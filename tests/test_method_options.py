"""Each method declares its options once (``Method.Options``); the constructor, the CLI and the eval JSON read them."""

import dataclasses
import json

import pytest
from conftest import run_cli

from lfrefsr.errors import LfrefsrError
from lfrefsr.methods import available, get_method, method_class, typed_options


@pytest.mark.parametrize("name", available())
def test_every_option_is_declared_with_help_and_a_default_its_type_admits(name):
    cls = method_class(name)
    typed = cls.Options.build(name, {})
    for field in cls.Options.declared():
        assert field.metadata["help"], f"{name}.{field.name} has no help"
        # the default goes through the declared type unchanged
        assert cls.Options.build(name, {field.name: field.default}) == typed
    assert cls.learned == (cls.Options.with_flag("--precision") is not None)
    assert cls.camera == cls.Options.camera()


def test_options_are_converted_to_their_declared_types():
    typed = typed_options("flowwarp", {"patch": "12", "consistency": "none", "tolerance": "0.05", "noise": 2})
    assert (typed.patch, typed.consistency, typed.tolerance, typed.noise) == (12, None, 0.05, 2.0)
    assert isinstance(typed.noise, float)
    assert typed_options("refsr_paper", {"epipolar": "yes"}).epipolar is True


@pytest.mark.parametrize("given,words", [({"patch_size": 8}, ["patch_size", "tolerance"]),
                                         ({"preset": "slow"}, ["preset", "medium"]),
                                         ({"patch": "eight"}, ["patch", "int"]),
                                         ({"tolerance": None}, ["tolerance", "required"])])
def test_a_bad_option_is_one_line_naming_it(given, words):
    with pytest.raises(LfrefsrError) as caught:
        get_method("flowwarp", scale=4, **given)
    message = str(caught.value)
    assert "\n" not in message and all(word in message for word in words), message


def test_a_variant_names_the_method_that_runs_it():
    assert method_class("refsr", {"variant": "paper"}) is method_class("refsr_paper")
    assert method_class("refsr", {"variant": "default"}) is method_class("refsr")
    assert isinstance(typed_options("refsr", {"variant": "paper", "stride": 8}), method_class("refsr_paper").Options)
    with pytest.raises(LfrefsrError, match="no variant"):
        method_class("flowwarp", {"variant": "paper"})
    with pytest.raises(LfrefsrError, match="stride"):  # an option of the paper's method only
        typed_options("refsr", {"stride": 8})


def test_the_cli_variant_choices_are_the_methods_variants():
    from lfrefsr.cli.options import variant_option

    @variant_option
    def command(variant):
        pass

    (param,) = command.__click_params__
    assert set(param.type.choices) == {key for name in available() for key in method_class(name).variants}


def test_every_cli_flag_for_method_options_is_declared_by_some_method():
    from lfrefsr.cli.method_options import FLAG_NOUNS, OPTIONAL_FOR

    for flag in [*FLAG_NOUNS, *OPTIONAL_FOR]:
        assert any(method_class(name).Options.with_flag(flag) for name in available()), flag


def test_eval_json_records_every_option_and_the_cli_sets_any_by_name(lf_dir, out_dir):
    json_path = out_dir / "e.json"
    result = run_cli(["eval", "lf", lf_dir, "--json", json_path, "--methods", "bicubic,flowwarp", "--grid", "2x2",
                      "-o", "patch=16", "--option", "tolerance=0.05", "-q"])
    assert result.exit_code == 0, result.output
    recorded = json.loads(json_path.read_text())["methods"]
    expected = dataclasses.replace(typed_options("flowwarp"), patch=16, tolerance=0.05).as_json()
    assert recorded["flowwarp"]["options"] == expected and recorded["bicubic"]["options"] == {}


@pytest.mark.parametrize("args,words", [(["-o", "nonsense=1"], ["nonsense", "lfrefsr methods"]),
                                        (["-o", "patch=eight"], ["patch", "int"]),
                                        (["-o", "patch"], ["KEY=VALUE"])])
def test_a_bad_option_on_the_command_line_is_one_line_exit_2(lf_dir, out_dir, args, words):
    result = run_cli(["eval", "lf", lf_dir, "--json", out_dir / "e.json", "--methods", "flowwarp", *args])
    assert result.exit_code == 2
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert all(word in line for word in words), line
    assert list(out_dir.iterdir()) == []


def test_methods_command_lists_the_declared_options():
    result = run_cli(["methods", "flowwarp", "refsr"])
    assert result.exit_code == 0, result.output
    for name in ("tolerance", "consistency", "lightfield", "--variant default|paper", "ssnet_weights"):
        assert name in result.stdout
    assert run_cli(["methods", "nosuch"]).exit_code == 2
