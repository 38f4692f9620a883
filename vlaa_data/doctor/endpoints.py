"""Model checks: each LLM step's preset, the API key variables and each distinct endpoint's
``GET /models``, probed concurrently. A key is only ever shown as its variable's name and
``set`` or ``missing``, and every detail is scrubbed of the keys read, in case an endpoint
echoes one back. The LLM steps ask ``endpoint_problem`` the same before their first request."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from vlaa_data.doctor.checks import Check, llm_check, one_line, scrub
from vlaa_data.errors import SettingsError
from vlaa_data.llm.presets import Endpoint, load_presets, redact_url, resolve_endpoint
from vlaa_data.llm.reply import SCRIPTED_FINGERPRINT
from vlaa_data.settings import Settings, endpoint_entries
from vlaa_data.steps.registry import settings_steps
from vlaa_data.workspace import CONFIG_NAME

__all__ = [
    "PROBE_TIMEOUT_S",
    "endpoint_check",
    "endpoint_problem",
    "model_checks",
    "serves_scripted",
]

PROBE_TIMEOUT_S = 5.0
# Steps that resolve their endpoint, key included, only when they need a model: a missing key
# there is a warning, not a failure.
_OPTIONAL_USERS = {
    "verify": "the judge, asked only where rules cannot decide",
    "aha": "filter aha --method model",
}


@dataclass
class _Target:
    """One distinct endpoint and what the steps expect of it."""

    base_url: str
    key_env: str = ""
    api_key: str | None = field(default=None, repr=False)
    models: dict[str, list[str]] = field(default_factory=dict)  # model id -> steps
    blocked: bool = False  # a step there lacks the key it needs: not worth asking


def model_checks(
    settings: Settings,
    *,
    offline: bool = False,
    base_url: str | None = None,
    api_key_env: str | None = None,
    timeout_s: float = PROBE_TIMEOUT_S,
    environ: Mapping[str, str] | None = None,
) -> list[Check]:
    """Each LLM step's preset, the key variables they read, and each distinct endpoint once.

    ``base_url`` and ``api_key_env`` apply to every step, as the steps' own flags do.
    """
    environ = os.environ if environ is None else environ
    try:
        presets = load_presets(settings.presets)
    except SettingsError as exc:
        return [llm_check("presets", "fail", str(exc), f"correct it in {CONFIG_NAME}")]
    checks: list[Check] = []
    endpoints: dict[str, Endpoint] = {}
    fleets: list[tuple[str, Endpoint]] = []  # every endpoint of every step
    blocked: set[str] = set()  # steps that would refuse to start for want of their key
    for step in _llm_steps(settings):
        section = settings.step(step)
        urls = [entry.url for entry in endpoint_entries(base_url or section.base_url)]
        resolve = functools.partial(
            resolve_endpoint,
            section.model,
            presets,
            base_url=urls[0] if urls else None,
            api_key_env=api_key_env or section.api_key_env,
            environ=environ,
        )
        try:
            endpoint = resolve(needs_key=False)
        except SettingsError as exc:
            fix = f"set [{step}] model in {CONFIG_NAME} to a preset, or add [presets.NAME]"
            checks.append(llm_check(f"model {step}", "fail", str(exc), fix))
            continue
        if not endpoint.base_url:
            checks.append(
                llm_check(
                    f"model {step}",
                    "fail",
                    f"preset {section.model} has no base_url",
                    f"add base_url to [presets.{section.model}] in {CONFIG_NAME}",
                )
            )
            continue
        fleet = [endpoint] + [replace(endpoint, base_url=url) for url in urls[1:]]
        shown = ", ".join(e.shown_base_url or "" for e in fleet)
        checks.append(
            llm_check(f"model {step}", "ok", f"{section.model}: {endpoint.preset.model} at {shown}")
        )
        endpoints[step] = endpoint
        fleets += [(step, e) for e in fleet]
        try:  # the step's own rule: e.g. a preset moved to another endpoint needs no key
            resolve()
        except SettingsError:
            blocked.add(step)
    checks += _key_checks(endpoints, blocked)
    targets = _targets(fleets, blocked)
    checks += _endpoint_checks(targets, offline=offline, timeout_s=timeout_s)
    secrets = {e.api_key for e in endpoints.values() if e.api_key}
    return [scrub(check, secrets) for check in checks]


def _llm_steps(settings: Settings) -> list[str]:
    """The sections that name a model (caption, distill, rewrite, verify, aha), in order."""
    return [step.name for step in settings_steps()]


def _key_checks(endpoints: Mapping[str, Endpoint], blocked: set[str]) -> list[Check]:
    users: dict[str, list[str]] = {}
    for step, endpoint in endpoints.items():
        if endpoint.api_key_env:
            users.setdefault(endpoint.api_key_env, []).append(step)
    checks = []
    for variable, steps in users.items():
        name = f"key {variable}"
        if any(endpoints[step].api_key for step in steps):
            checks.append(llm_check(name, "ok", f"set (for {', '.join(steps)})"))
            continue
        if not blocked.intersection(steps):
            checks.append(
                llm_check(name, "ok", "not set; not needed away from the preset's endpoint")
            )
            continue
        needing = [step for step in steps if step in blocked]
        required = [step for step in needing if step not in _OPTIONAL_USERS]
        optional = "; ".join(f"{s}: {_OPTIONAL_USERS[s]}" for s in needing if s not in required)
        need = ", ".join(required) if required else optional
        checks.append(
            llm_check(
                name,
                "fail" if required else "warn",
                f"missing (needed by {need})",
                f"export {variable}=..., or set api_key_env in the step's section",
            )
        )
    return checks


def _targets(endpoints: Iterable[tuple[str, Endpoint]], blocked: set[str]) -> list[_Target]:
    """One target per distinct base URL; its key is the first one set among its steps."""
    targets: dict[str, _Target] = {}
    for step, endpoint in endpoints:
        assert endpoint.base_url is not None
        url = endpoint.base_url.rstrip("/")
        target = targets.setdefault(url, _Target(url))
        if endpoint.api_key and target.api_key is None:
            target.api_key, target.key_env = endpoint.api_key, endpoint.api_key_env
        elif endpoint.api_key_env and not target.key_env:
            target.key_env = endpoint.api_key_env
        target.models.setdefault(endpoint.preset.model, []).append(step)
        target.blocked = target.blocked or step in blocked
    return list(targets.values())


def _endpoint_checks(targets: list[_Target], *, offline: bool, timeout_s: float) -> list[Check]:
    checks: list[Check | None] = [None] * len(targets)
    probed = []
    for index, target in enumerate(targets):
        name = f"endpoint {redact_url(target.base_url)}"
        if offline:
            checks[index] = llm_check(name, "skip", "not contacted (--offline)")
        elif target.blocked and target.api_key is None:
            checks[index] = llm_check(name, "skip", f"not contacted: {target.key_env} is missing")
        else:
            probed.append(index)
    if probed:
        results = asyncio.run(_probe_all([targets[i] for i in probed], timeout_s))
        for index, check in zip(probed, results, strict=True):
            checks[index] = check
    return [check for check in checks if check is not None]


async def _probe_all(targets: list[_Target], timeout_s: float) -> list[Check]:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        return list(await asyncio.gather(*(_probe(session, t, timeout_s) for t in targets)))


async def endpoint_problem(endpoint: Endpoint, *, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Why requests to ``endpoint`` cannot succeed, in one line naming it (credentials and key
    redacted): it does not answer ``GET /models``, or refuses the key. None when it answers
    otherwise: a server without ``/models``, or one that does not list the model, may still
    take chat requests, which will say so themselves."""
    check = await endpoint_check(endpoint, timeout_s=timeout_s)
    return None if check is None else f"{check.name}: {check.detail}; {check.fix}"


async def endpoint_check(endpoint: Endpoint, *, timeout_s: float = PROBE_TIMEOUT_S) -> Check | None:
    """The failed check behind ``endpoint_problem`` (its name, detail and fix), or None."""
    if not endpoint.base_url:
        return None
    target, answer = await _ask_endpoint(endpoint, timeout_s)
    target.models[endpoint.preset.model] = [endpoint.preset.name]
    if not isinstance(answer, Check):
        if answer[0] not in (401, 403):
            return None
        answer = _verdict(target, *answer)
    return scrub(answer, [endpoint.api_key] if endpoint.api_key else [])


async def serves_scripted(endpoint: Endpoint, *, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether ``endpoint`` is the scripted stand-in server (``vlaa_data.testing.server``): its
    ``GET /models`` lists models owned by ``SCRIPTED_FINGERPRINT``. False for any other
    answer, or none."""
    if not endpoint.base_url:
        return False
    _, answer = await _ask_endpoint(endpoint, timeout_s)
    return not isinstance(answer, Check) and answer[0] == 200 and _scripted_list(answer[1])


async def _ask_endpoint(
    endpoint: Endpoint, timeout_s: float
) -> tuple[_Target, tuple[int, bytes, float] | Check]:
    """``GET /models`` of one endpoint, in a session of its own (see ``_ask``)."""
    import aiohttp

    assert endpoint.base_url is not None
    target = _Target(endpoint.base_url.rstrip("/"), endpoint.api_key_env, endpoint.api_key)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        return target, await _ask(session, target, timeout_s)


async def _probe(session: Any, target: _Target, timeout_s: float) -> Check:
    """``GET {base_url}/models`` with the key as bearer; does it list the steps' models?"""
    answer = await _ask(session, target, timeout_s)
    return answer if isinstance(answer, Check) else _verdict(target, *answer)


async def _ask(session: Any, target: _Target, timeout_s: float) -> tuple[int, bytes, float] | Check:
    """``GET {base_url}/models``: its status, body and seconds, or the failed check when
    there was no answer."""
    import aiohttp

    name = f"endpoint {redact_url(target.base_url)}"
    url = f"{target.base_url}/models"
    if not re.match(r"https?://[^/]", target.base_url):
        return llm_check(name, "fail", "not an http(s) URL", "correct base_url")
    headers = {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}
    started = time.monotonic()
    try:
        async with session.get(url, headers=headers) as response:
            status, body = response.status, await response.read()
    except asyncio.TimeoutError:
        return llm_check(
            name,
            "fail",
            f"unreachable: no answer within {timeout_s:g} s",
            "check that the server runs and the URL is right (--timeout to wait longer)",
        )
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return llm_check(
            name,
            "fail",
            f"unreachable: {one_line(exc)}",
            "check that the server runs, the URL and port are right, and the network allows it",
        )
    return status, body, time.monotonic() - started


def _verdict(target: _Target, status: int, body: bytes, seconds: float) -> Check:
    """What the answer to ``GET /models`` says of the endpoint."""
    from vlaa_data.llm.http import _error_message

    name = f"endpoint {redact_url(target.base_url)}"
    url = f"{target.base_url}/models"
    elapsed = f"answers in {seconds:.2f} s"
    if status in (401, 403):
        # The message may quote part of the key ("Incorrect API key provided: sk-…abcd").
        refused = f"refuses the key in {target.key_env}" if target.key_env else "wants a key"
        return llm_check(
            name,
            "fail",
            f"HTTP {status}: it {refused}",
            f"check {target.key_env}" if target.key_env else "set api_key_env in the preset",
        )
    if status == 404:
        return llm_check(
            name,
            "warn",
            f"HTTP 404 on {url}: {one_line(_error_message(body))}",
            "check base_url (OpenAI-compatible servers usually end in /v1)",
        )
    if not 200 <= status < 300:
        return llm_check(
            name,
            "fail",
            f"HTTP {status}: {one_line(_error_message(body))}",
            "check the server's logs, or try again later",
        )
    served = _model_ids(body)
    if served is None:
        return llm_check(name, "warn", f"{elapsed}, but /models is not a model list")
    missing = [f"{m} ({', '.join(s)})" for m, s in target.models.items() if m not in served]
    listing = ", ".join(sorted(served)[:5]) + (
        f" and {len(served) - 5} more" if len(served) > 5 else ""
    )
    if missing:
        return llm_check(
            name,
            "warn",
            f"{elapsed}, but does not list {'; '.join(missing)}; it serves {listing or 'none'}",
            "check the preset's model id, or that the server has loaded that model",
        )
    if _scripted_list(body):
        listing += " (the scripted stand-in server: placeholder replies, not a model's)"
    return llm_check(name, "ok", f"{elapsed}; serves {listing}")


def _scripted_list(body: bytes) -> bool:
    try:
        models = json.loads(body)["data"]
        return any(
            isinstance(m, dict) and m.get("owned_by") == SCRIPTED_FINGERPRINT for m in models
        )
    except (ValueError, KeyError, TypeError):
        return False


def _model_ids(body: bytes) -> set[str] | None:
    try:
        data = json.loads(body)
        return {str(item["id"]) for item in data["data"] if isinstance(item, dict)}
    except (ValueError, KeyError, TypeError):
        return None
