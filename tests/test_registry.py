"""One registry for methods, matchers, models and trainers: a name registers once, lazily imported entries resolve,
and an unknown name is one line naming what exists."""

import pytest

from lfrefsr.correspondence.matchers import MATCHERS
from lfrefsr.errors import LfrefsrError
from lfrefsr.methods.base import METHODS
from lfrefsr.models import MODELS, build_model
from lfrefsr.registry import Registry
from lfrefsr.training import TRAINERS


def test_a_second_object_under_a_taken_name_is_refused():
    registry = Registry("widget")

    class First:
        name = "w"

    class Second:
        name = "w"

    registry.register(First)
    registry.register(First)  # the same class again (a module imported twice) is harmless
    with pytest.raises(ValueError, match="widget 'w' is registered twice"):
        registry.register(Second)
    assert registry.get("w") is First


def test_a_method_or_matcher_declaring_a_taken_name_is_refused():
    from lfrefsr.methods import Method, register

    with pytest.raises(ValueError, match="method 'flowwarp' is registered twice"):
        @register
        class Impostor(Method):
            name = "flowwarp"
    assert METHODS.get("flowwarp").__module__ == "lfrefsr.methods.flowwarp"
    assert {"ccnet", "zncc", "zncc_blurry", "gradient"} <= set(MATCHERS.names())


def test_lazy_entries_resolve_and_unknown_names_are_one_line():
    assert {"ccnet", "srresnet", "ssnet"} == set(MODELS.names()) and {"ccnet", "sisr", "ssnet"} == set(TRAINERS.names())
    assert TRAINERS.get("sisr").__name__ == "train_sisr"
    assert type(build_model({"name": "ssnet", "lr_channels": 8, "features": 4})).__name__ == "SSNet"
    with pytest.raises(LfrefsrError, match=r"unknown model 'resnet' \(available: ccnet, srresnet, ssnet\)"):
        build_model({"name": "resnet"})
    with pytest.raises(LfrefsrError, match="unknown method 'nope'"):
        METHODS.get("nope")
