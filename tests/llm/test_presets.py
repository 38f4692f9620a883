"""Presets: built-in, overridden in vlaa.toml, raw model ids; and DeepSeek's request shape."""

from __future__ import annotations

import pytest

from tests.llm.conftest import run_step
from vlaa_data.errors import SettingsError
from vlaa_data.llm.presets import load_presets, resolve_endpoint
from vlaa_data.testing.server import Reply, ScriptedServer


def test_builtin_presets_hold_what_the_steps_need() -> None:
    presets = load_presets()
    r1 = presets["deepseek-r1"]
    assert (r1.base_url, r1.model, r1.api_key_env, r1.reasoning) == (
        "https://api.deepseek.com",
        "deepseek-reasoner",
        "DEEPSEEK_API_KEY",
        "field",
    )
    assert presets["gpt-4o"].vision and presets["gpt-4o"].api_key_env == "OPENAI_API_KEY"
    assert {"gpt-4o-mini", "gpt-3.5-turbo", "local-r1", "local-qwen2.5-vl"} <= set(presets)
    assert presets["local-r1"].reasoning == "inline" and not presets["local-r1"].api_key_env
    assert r1.cost(1_000_000, 1_000_000) == pytest.approx(r1.price_input + r1.price_output)


def test_workspace_presets_override_fields_and_add_new_ones() -> None:
    presets = load_presets(
        {"gpt-4o": {"price_input": 9.0}, "my-r1": {"model": "r1", "base_url": "http://h/v1"}}
    )
    assert presets["gpt-4o"].price_input == 9.0 and presets["gpt-4o"].model == "gpt-4o"
    assert presets["my-r1"].base_url == "http://h/v1"
    with pytest.raises(SettingsError, match=r"presets\.bad\.reasoning"):
        load_presets({"bad": {"model": "x", "reasoning": "sometimes"}})


def test_resolving_a_model() -> None:
    presets = load_presets()
    with pytest.raises(SettingsError, match=r"unknown model preset 'nope'.*deepseek-r1"):
        resolve_endpoint("nope", presets, environ={})
    raw = resolve_endpoint("my/model", presets, base_url="http://127.0.0.1:1/v1", environ={})
    assert raw.preset.model == "my/model" and raw.api_key is None
    keyed = resolve_endpoint("gpt-4o", presets, api_key_env="MY_KEY", environ={"MY_KEY": "sk-abc"})
    assert keyed.api_key == "sk-abc" and "sk-abc" not in repr(keyed)
    unchecked = resolve_endpoint("deepseek-r1", presets, needs_key=False, environ={})
    assert unchecked.api_key is None
    with pytest.raises(SettingsError, match="DEEPSEEK_API_KEY is not set"):
        resolve_endpoint("deepseek-r1", presets, environ={})
    # A preset moved to another endpoint needs no key; one that is set still goes along, and
    # a key named with api_key_env is required.
    local = "http://127.0.0.1:8000/v1"
    hosted = resolve_endpoint("deepseek-r1", presets, base_url=local, environ={})
    assert hosted.base_url == local and hosted.api_key is None
    environ = {"DEEPSEEK_API_KEY": "sk-ds"}
    assert resolve_endpoint("deepseek-r1", presets, base_url=local, environ=environ).api_key
    with pytest.raises(SettingsError, match="MY_KEY is not set"):
        resolve_endpoint("deepseek-r1", presets, base_url=local, api_key_env="MY_KEY", environ={})
    same = presets["deepseek-r1"].base_url
    with pytest.raises(SettingsError, match="DEEPSEEK_API_KEY is not set"):
        resolve_endpoint("deepseek-r1", presets, base_url=same, environ={})


def test_distill_with_deepseek_r1_sends_what_deepseeks_api_expects(
    llm_workspace, server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = llm_workspace(2)
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-deepseek-fake-123")
    server.responder = lambda request, attempt: Reply.ok(
        "Answer: 3", reasoning_content="Three cubes, wait, yes three."
    )
    # the real preset, with only its endpoint pointed at the local server
    report = run_step(root, "distill", model="deepseek-r1", base_url=server.url)
    assert report.outcomes == {"done": 2}
    body = server.requests[0]
    assert body["model"] == "deepseek-reasoner"
    # one user message; no temperature/top_p (ignored) and no logprobs (refused by the API)
    assert set(body) == {"model", "messages", "max_tokens"}
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert isinstance(body["messages"][0]["content"], str)
    assert server.auth_headers[0] == "Bearer sk-deepseek-fake-123"


def test_a_raw_model_id_may_caption(llm_workspace, server: ScriptedServer) -> None:
    root = llm_workspace(1, caption=False)
    report = run_step(root, "caption", model="any/vlm", base_url=server.url)
    assert report.outcomes == {"done": 1} and server.requests[0]["model"] == "any/vlm"
