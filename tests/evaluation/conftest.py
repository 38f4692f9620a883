"""An hf export of the release tests' workspace: RL clevr/c2, c4, c6 (digit) and arxiv/a2
(choice); SFT clevr/c1, c5 (digit) and arxiv/a3 (choice). Two rows a shard, so that reading
in export order spans shards."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.release.conftest import ARXIV, CLEVR, build_release, build_verified_workspace
from vlaa_data.release.export import export_release
from vlaa_data.testing.server import Reply
from vlaa_data.workspace import Workspace, init_workspace

GOLD = {
    f"{source}/{ident}": gold
    for source, rows in (("clevr", CLEVR), ("arxiv", ARXIV))
    for ident, gold, *_ in rows
}


@pytest.fixture(scope="package")
def hf_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("eval_export")
    workspace = build_release(build_verified_workspace(init_workspace(root / "ws"), root))
    with Workspace.open(workspace, write=True) as ws:
        export_release(ws, "v1", "hf", root / "hf", shard_rows=2)
    return root / "hf"


def export_ids(folder: Path, split: str) -> list[str]:
    """The ids of a split as the export wrote them, read with pyarrow, shard after shard."""
    import pyarrow.parquet as pq

    shards = sorted((folder / "data").glob(f"{split}-*.parquet"))
    return [ident for shard in shards for ident in pq.read_table(shard)["id"].to_pylist()]


def answer_with_gold(request: dict, attempt: int) -> Reply:
    """A perfect model, in the R1 format, that refuses arxiv/a2 (a 400 is not retried)."""
    user = request["messages"][-1]["content"]
    text = next(part["text"] for part in user if part["type"] == "text")
    ident = re.match(r"Question (\w+):", text).group(1)
    if ident == "a2":
        return Reply.error(400, message="this one the server refuses")
    gold = next(g for key, g in GOLD.items() if key.endswith(f"/{ident}"))
    return Reply.ok(f"<think>I can see it.</think><answer>{gold}</answer>")
