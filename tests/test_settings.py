"""One declaration per option (:mod:`nbstream.settings`): everything else is derived from
it or checked against it here."""

from __future__ import annotations

import dataclasses

import pytest

from nbstream import settings
from nbstream.errors import SettingsError
from nbstream.notebook import magics
from nbstream.providers.base import Request
from nbstream.settings import UNSET, Settings, resolve


def test_every_option_is_a_magic_flag_with_the_declared_help():
    parser = magics.LLMMagics.llm.parser
    by_dest = {action.dest: action for action in parser._actions}
    for name, field in Settings.model_fields.items():
        action = by_dest[name]
        assert settings.flag_of(name) in action.option_strings
        assert field.description and field.description.replace("%", "%%") in action.help
    assert {"out", "raw"} <= by_dest.keys()  # front-door flags, declared in magics.py


def test_every_option_is_a_config_trait_with_the_declared_help():
    traits = magics.LLMMagics.class_traits(config=True)
    for name, field in Settings.model_fields.items():
        assert name in traits, name
        assert traits[name].help.startswith(field.description)
        assert settings.env_var(name) in traits[name].help


NOT_OPTIONS = ("messages", "schema", "tools", "parts", "whole")
"""Request fields the front door builds (from --chat, --schema, --tools, the prompt's
images, and a batch's choice to ask a row whole), not options as such."""


def test_request_carries_exactly_the_request_options():
    fields = [f.name for f in dataclasses.fields(Request)]
    assert fields[:2] == ["prompt", "model"]
    assert fields[-len(NOT_OPTIONS) :] == list(NOT_OPTIONS)
    assert set(fields[2 : -len(NOT_OPTIONS)]) == set(settings.request_fields())
    for name in settings.request_fields():  # same defaults as the declaration
        default = next(f.default for f in dataclasses.fields(Request) if f.name == name)
        assert default == Settings.model_fields[name].default, name


def test_precedence_call_then_config_then_environment_then_default():
    env = {"NBSTREAM_TEMPERATURE": "0.1", "NBSTREAM_MAX_TOKENS": "10", "NBSTREAM_TOP_P": "0.3"}
    config = {"temperature": 0.2, "max_tokens": 20, "system": None}  # None: not configured
    s = resolve({"temperature": 0.3, "top_p": UNSET}, config, env)
    assert (s.temperature, s.max_tokens, s.top_p, s.system) == (0.3, 20, 0.3, None)
    assert s.idle_timeout == Settings.model_fields["idle_timeout"].default


def test_none_in_a_call_is_a_choice_unset_is_not():
    config = {"system": "Be brief."}
    assert resolve({"system": UNSET}, config, {}).system == "Be brief."
    assert resolve({"system": None}, config, {}).system is None


def test_environment_values_are_parsed_and_validated():
    env = {"NBSTREAM_STOP": '["a", "b"]', "NBSTREAM_HTTP_RETRIES": "5", "NBSTREAM_DISPLAY": "text"}
    s = resolve({}, {}, env)
    assert s.stop == ["a", "b"] and s.http_retries == 5 and s.display == "text"
    assert resolve({}, {}, {"NBSTREAM_STOP": "END"}).stop == ["END"]
    with pytest.raises(
        SettingsError, match=r"\$NBSTREAM_HTTP_RETRIES: input should be a valid integer"
    ):
        resolve({}, {}, {"NBSTREAM_HTTP_RETRIES": "many"})


def test_errors_say_where_the_bad_value_came_from():
    with pytest.raises(SettingsError) as info:
        resolve({"temperature": 7}, {"idle_timeout": -1}, {"NBSTREAM_TOP_P": "2"})
    problems = {p.name: p.source for p in info.value.problems}
    assert problems == {"temperature": "call", "idle_timeout": "config", "top_p": "env"}
    text = str(info.value)
    assert "the temperature option: input should be less than or equal to 2, got 7" in text
    assert "%config LLMMagics.idle_timeout: input should be greater than 0" in text
    assert "$NBSTREAM_TOP_P: input should be less than or equal to 1" in text
    assert info.value.describe(settings.flag_of).startswith("--temperature: ")


def test_unknown_option_is_a_type_error():
    with pytest.raises(TypeError, match="unknown option"):
        resolve({"temprature": 1})


def test_config_assignment_is_validated_at_once(ip):
    from traitlets import TraitError

    instance = magics.instance()
    instance.top_p = 0.5
    assert instance.configured()["top_p"] == 0.5
    with pytest.raises(TraitError, match="input should be less than or equal to 1"):
        instance.top_p = 3.0
    instance.top_p = None
