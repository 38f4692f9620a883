"""Numbered schema migrations; each runs once, in order, inside one transaction.

Add a migration by appending to ``MIGRATIONS``; never edit one that has shipped.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MIGRATIONS", "Migration"]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


_INITIAL = """
CREATE TABLE images (
    sha        VARCHAR PRIMARY KEY,          -- sha256 of the file's bytes
    path       VARCHAR NOT NULL,             -- relative to the workspace: images/ab/<sha>.<ext>
    width      INTEGER NOT NULL,
    height     INTEGER NOT NULL,
    format     VARCHAR NOT NULL,             -- Pillow's format name: PNG, JPEG, ...
    bytes      BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

CREATE TABLE samples (
    id           VARCHAR PRIMARY KEY,        -- '<source>/<source id>': stable across re-collects
    source       VARCHAR NOT NULL,
    source_id    VARCHAR NOT NULL,
    image_sha    VARCHAR NOT NULL,
    question     VARCHAR NOT NULL,
    answer       VARCHAR NOT NULL,           -- normalised ground truth
    reward_type  VARCHAR NOT NULL,           -- digit | choice | math | iou | open
    context      JSON NOT NULL,              -- dataset-specific extras
    run_id       VARCHAR NOT NULL,
    collected_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);
CREATE INDEX samples_source ON samples (source);

-- Rows of a source that never became samples; keyed so that a re-collect replaces, not adds.
CREATE TABLE collect_rejects (
    source     VARCHAR NOT NULL,
    row_key    VARCHAR NOT NULL,
    reason     VARCHAR NOT NULL,             -- a short code: missing_question, image_corrupt, ...
    detail     VARCHAR NOT NULL,
    row_json   VARCHAR,                      -- a truncated preview of the offending row
    run_id     VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (source, row_key)
);

-- Append-only: one row per (sample, step, attempt). parent_id is the upstream result this one
-- was derived from (lineage); redoing an upstream step makes everything below it stale.
CREATE TABLE results (
    id          BIGINT PRIMARY KEY,
    sample_id   VARCHAR NOT NULL,
    step        VARCHAR NOT NULL,            -- caption | distill | rewrite | verify | split
    attempt     INTEGER NOT NULL,
    status      VARCHAR NOT NULL,            -- done | rejected | failed | truncated
    output      JSON,
    reason      VARCHAR,
    method      VARCHAR,                     -- how: model, rule name, 'imported', 'unchanged', ...
    model       VARCHAR,
    prompt_hash VARCHAR,
    run_id      VARCHAR NOT NULL,
    parent_id   BIGINT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);
CREATE INDEX results_sample_step ON results (sample_id, step);

CREATE TABLE runs (
    id           VARCHAR PRIMARY KEY,
    command      VARCHAR NOT NULL,
    tool_version VARCHAR NOT NULL,
    settings     JSON,
    started_at   TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    ended_at     TIMESTAMPTZ,
    status       VARCHAR NOT NULL,           -- running | finished | failed | interrupted
    counts       JSON
);

CREATE VIEW latest_results AS
SELECT * EXCLUDE (rn) FROM (
    SELECT *, row_number() OVER (PARTITION BY sample_id, step ORDER BY id DESC) AS rn
    FROM results
) WHERE rn = 1;

-- A latest result is current when it has no parent, or its parent is itself current.
CREATE VIEW current_results AS
WITH RECURSIVE chain AS (
    SELECT * FROM latest_results WHERE parent_id IS NULL
    UNION ALL
    SELECT l.* FROM latest_results l JOIN chain c ON l.parent_id = c.id
)
SELECT * FROM chain;
"""

_LLM_CALLS = """
-- The request cache and cost ledger: one row per reply received (a reply is what gets billed).
-- A request is looked up by key before it is sent; only status 'ok' rows are reused.
CREATE TABLE llm_calls (
    id            VARCHAR PRIMARY KEY,
    key           VARCHAR NOT NULL,          -- sha256 of the rendered request
    step          VARCHAR NOT NULL,
    sample_id     VARCHAR,
    backend       VARCHAR NOT NULL,          -- openai | transformers | vllm
    base_url      VARCHAR,
    model         VARCHAR NOT NULL,          -- the model id sent to the endpoint
    preset        VARCHAR,
    request       JSON NOT NULL,             -- model, messages (images by sha), params
    response      JSON,                      -- the reply body as received
    status        VARCHAR NOT NULL,          -- ok | unparseable
    error         VARCHAR,
    finish_reason VARCHAR,
    tokens_in     INTEGER,
    tokens_out    INTEGER,
    cost_usd      DOUBLE,
    latency_s     DOUBLE,
    run_id        VARCHAR NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);
"""

MIGRATIONS: list[Migration] = [
    Migration(1, "initial: images, samples, collect_rejects, results, runs", _INITIAL),
    Migration(2, "llm_calls: request cache and cost ledger", _LLM_CALLS),
]
