"""Presets: built-in, overridden in vlaa.toml, raw model ids; and DeepSeek's request shape."""

from __future__ import annotations

import pytest

from tests.conftest import CliRun, query
from tests.llm.conftest import closed_url, run_step
from vlaa_data.errors import SettingsError
from vlaa_data.llm.presets import load_presets, resolve_endpoint
from vlaa_data.testing.server import Reply, ScriptedServer

OPENAI = "https://api.openai.com/v1"


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


def test_openai_base_url_moves_the_openai_presets_and_base_url_still_wins() -> None:
    presets = load_presets()
    gateway = "http://gateway.internal:8080/v1"
    environ = {"OPENAI_BASE_URL": gateway}
    moved = resolve_endpoint("gpt-4o", presets, environ=environ)
    # moved elsewhere, the preset needs no key (a gateway may want none), and sends one set
    assert moved.base_url == gateway and moved.api_key is None
    keyed = resolve_endpoint("gpt-4o-mini", presets, environ={**environ, "OPENAI_API_KEY": "k"})
    assert keyed.base_url == gateway and keyed.api_key == "k"
    flag = resolve_endpoint("gpt-4o", presets, base_url="http://gpu:9/v1", environ=environ)
    assert flag.base_url == "http://gpu:9/v1"
    # only presets on api.openai.com move
    other = resolve_endpoint("deepseek-r1", presets, needs_key=False, environ=environ)
    assert other.base_url == "https://api.deepseek.com"
    local = resolve_endpoint("local-r1", presets, environ=environ)
    assert local.base_url == "http://127.0.0.1:8000/v1"
    # OpenAI's own URL, however written, still needs OpenAI's key; an empty one is unset
    with pytest.raises(SettingsError, match="OPENAI_API_KEY is not set"):
        resolve_endpoint("gpt-4o", presets, environ={"OPENAI_BASE_URL": OPENAI + "/"})
    unset = resolve_endpoint("gpt-4o", presets, needs_key=False, environ={"OPENAI_BASE_URL": ""})
    assert unset.base_url == OPENAI


def test_caption_with_gpt_4o_goes_to_openai_base_url_and_base_url_wins(
    llm_workspace, server: ScriptedServer, cli: CliRun
) -> None:
    root = llm_workspace(2, caption=False)
    env = {"OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "sk-openai-fake-42"}

    elsewhere = cli("caption", "-w", root, "--model", "gpt-4o", "--base-url", closed_url(), env=env)
    assert elsewhere.returncode == 1 and "unreachable" in elsewhere.stderr
    assert server.count == 0

    done = cli("caption", "-w", root, "--model", "gpt-4o", env=env)
    assert done.returncode == 0, done.stderr
    assert [r["model"] for r in server.requests] == ["gpt-4o", "gpt-4o"]
    assert server.auth_headers == ["Bearer sk-openai-fake-42"] * 2
    assert query(root, "SELECT DISTINCT base_url FROM llm_calls") == [(server.url,)]


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


def test_presets_shows_where_openai_base_url_sends_the_openai_presets(cli) -> None:
    import json

    moved = cli("presets", "--json", env={"OPENAI_BASE_URL": "http://user:pw@127.0.0.1:9/v1"})
    assert moved.returncode == 0, moved.stderr
    known = json.loads(moved.stdout)
    assert known["gpt-4o"]["endpoint"] == "http://***@127.0.0.1:9/v1"  # credentials hidden
    assert known["gpt-4o"]["base_url"] == "https://api.openai.com/v1"
    assert known["deepseek-r1"]["endpoint"] == known["deepseek-r1"]["base_url"]
    table = cli("presets", env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    assert "http://127.0.0.1:9/v1 ($OPENAI_BASE_URL)" in " ".join(table.stdout.split())
    plain = json.loads(cli("presets", "--json", env={"OPENAI_BASE_URL": ""}).stdout)
    assert plain["gpt-4o"]["endpoint"] == "https://api.openai.com/v1"
