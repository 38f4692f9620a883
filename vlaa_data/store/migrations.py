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

_RELEASES = """
-- Per-sample metrics of the filters, one row per (sample, name): a rerun replaces its row.
-- result_id is the result whose text was scored; a newer text leaves the score stale (see
-- samples_view, which shows only scores of the current text).
CREATE TABLE scores (
    sample_id  VARCHAR NOT NULL,
    name       VARCHAR NOT NULL,             -- aha | aha_model | ppl:<model>
    value      DOUBLE,
    detail     JSON,                         -- keywords hit, settings, tokens scored
    result_id  BIGINT NOT NULL,
    run_id     VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (sample_id, name)
);

-- A named split: the parameters that rebuild it and where each considered sample went.
CREATE TABLE releases (
    name       VARCHAR PRIMARY KEY,
    params     JSON NOT NULL,
    counts     JSON NOT NULL,
    run_id     VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

CREATE TABLE release_samples (
    release        VARCHAR NOT NULL,
    sample_id      VARCHAR NOT NULL,
    split          VARCHAR NOT NULL,         -- sft | rl | excluded
    position       INTEGER,                  -- order within the split; NULL when excluded
    why            VARCHAR NOT NULL,         -- aha | no_aha | not_verified | where | quota | ...
    text_result_id BIGINT,                   -- the reasoning and answer this release holds
    PRIMARY KEY (release, sample_id)
);

-- Where a release was written or pushed.
CREATE TABLE release_events (
    release    VARCHAR NOT NULL,
    kind       VARCHAR NOT NULL,             -- export | push
    target     VARCHAR NOT NULL,             -- a directory, or a Hub repo id
    format     VARCHAR,
    revision   VARCHAR,                      -- the Hub commit
    tag        VARCHAR,
    detail     JSON,
    run_id     VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

-- One row per sample with what curating needs; `split --where` filters it, users query it.
-- The text is the rewrite's when it is done, else the distilled one; scores count only when
-- they scored that text. reasoning_tokens counts words and punctuation marks (no tokenizer).
CREATE VIEW samples_view AS
WITH cur AS (SELECT * FROM current_results),
text AS (
    SELECT sample_id, id, output FROM cur WHERE step = 'rewrite' AND status = 'done'
    UNION ALL
    SELECT d.sample_id, d.id, d.output FROM cur d
    WHERE d.step = 'distill' AND d.status = 'done' AND NOT EXISTS (
        SELECT 1 FROM cur r
        WHERE r.sample_id = d.sample_id AND r.step = 'rewrite' AND r.status = 'done')
),
ppl AS (
    SELECT sc.sample_id, avg(sc.value) AS ppl, count(*) AS ppl_models
    FROM scores sc JOIN text t ON t.sample_id = sc.sample_id AND t.id = sc.result_id
    WHERE sc.name LIKE 'ppl:%' GROUP BY sc.sample_id
)
SELECT
    s.id, s.source, s.source_id, s.reward_type, s.question, s.answer AS gold,
    s.image_sha, i.width, i.height,
    cap.output->>'caption' AS caption,
    t.id AS text_result_id,
    t.output->>'reasoning' AS reasoning,
    t.output->>'answer' AS response,
    len(regexp_extract_all(coalesce(t.output->>'reasoning', ''), '\\w+|[^\\w\\s]'))
        AS reasoning_tokens,
    v.output->>'verdict' AS verdict,
    v.method AS verify_method,
    aha.value::INTEGER AS aha_count,
    aha.detail->'keywords' AS aha_keywords,
    aham.value::INTEGER AS aha_model_count,
    ppl.ppl, ppl.ppl_models
FROM samples s
JOIN images i ON i.sha = s.image_sha
LEFT JOIN cur cap ON cap.sample_id = s.id AND cap.step = 'caption' AND cap.status = 'done'
LEFT JOIN text t ON t.sample_id = s.id
LEFT JOIN cur v ON v.sample_id = s.id AND v.step = 'verify'
LEFT JOIN scores aha ON aha.sample_id = s.id AND aha.name = 'aha' AND aha.result_id = t.id
LEFT JOIN scores aham
    ON aham.sample_id = s.id AND aham.name = 'aha_model' AND aham.result_id = t.id
LEFT JOIN ppl ON ppl.sample_id = s.id;
"""

_RESULT_ENDPOINTS = """
-- Where each LLM step's result came from: the ledger's backend and base_url of the reply it
-- holds (NULL where no model was asked), and whether that reply came from the scripted
-- stand-in server (vlaa_data.testing.server: placeholders, never a model's), which says so in
-- every reply's system_fingerprint. Older scripted replies are known by their completion id.
-- The index is dropped and rebuilt around the ALTERs, which older DuckDB refuses with it.
DROP INDEX results_sample_step;
ALTER TABLE results ADD COLUMN backend VARCHAR;
ALTER TABLE results ADD COLUMN base_url VARCHAR;
ALTER TABLE results ADD COLUMN scripted BOOLEAN;
CREATE INDEX results_sample_step ON results (sample_id, step);
ALTER TABLE llm_calls ADD COLUMN scripted BOOLEAN;
UPDATE llm_calls SET scripted = coalesce(
    json_extract_string(response, '$.system_fingerprint') = 'vlaa-data-scripted'
    OR json_extract_string(response, '$.id') LIKE 'chatcmpl-scripted-%', false);
-- A result written before: its reply is the ledger row of its key, from its own run if any.
UPDATE results SET backend = src.backend, base_url = src.base_url, scripted = src.scripted
FROM (
    SELECT r.id, c.backend, c.base_url, c.scripted
    FROM results r JOIN llm_calls c ON c.key = r.prompt_hash AND c.status = 'ok'
    QUALIFY row_number() OVER (
        PARTITION BY r.id ORDER BY (c.run_id = r.run_id) DESC, c.created_at DESC) = 1
) src
WHERE results.id = src.id;
"""

MIGRATIONS: list[Migration] = [
    Migration(1, "initial: images, samples, collect_rejects, results, runs", _INITIAL),
    Migration(2, "llm_calls: request cache and cost ledger", _LLM_CALLS),
    Migration(3, "scores, releases, release_samples, release_events", _RELEASES),
    Migration(4, "results.backend, base_url, scripted; llm_calls.scripted", _RESULT_ENDPOINTS),
]
