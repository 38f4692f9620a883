"""The dataset card of a release: ``README.md`` with Hub metadata, counts, plots and citation.

The template is ``vlaa_data/data_cards/dataset_card.md`` (``string.Template``: ``${name}``
placeholders); the tables and the YAML are rendered here. Plots are deterministic PNGs, so a
card written twice for the same release is byte-identical and a re-push uploads nothing new.
"""

from __future__ import annotations

import json
import os
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from vlaa_data import __version__
from vlaa_data.errors import VlaaError
from vlaa_data.release.formats import SPLITS
from vlaa_data.status import build_status
from vlaa_data.steps.registry import card_columns
from vlaa_data.store.releases import ReleaseRow
from vlaa_data.workspace import Workspace

__all__ = ["CardFacts", "card_facts", "render_card", "size_category", "write_card"]

TAGS = ["reasoning", "multimodal", "r1", "vlaa-thinking", "synthetic"]
TASKS = ["visual-question-answering", "image-text-to-text"]
_SIZES = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
]
_SECRET_MARKERS = ("TOKEN", "KEY", "SECRET", "PASSWORD")
_PLOT_SIZE = (6.4, 3.6)  # inches
_PLOT_DPI = 100


@dataclass
class CardFacts:
    """What the card states about release ``name``, gathered from the store."""

    name: str
    rows: Mapping[str, Sequence[ReleaseRow]]  # split (sft, rl, test) -> rows
    per_source: dict[str, dict[str, int]]  # source -> column (collected ... sft, rl, test) -> n
    verify_methods: dict[str, int]
    aha_rows: int
    params: dict[str, Any]
    models: list[tuple[str, str, str | None, int]]  # step, model, prompt hash, results
    license: str | None = None  # a Hub license id; None: "other", each source's own terms
    license_name: str | None = None  # with license "other": the license's short name
    license_link: str | None = None  # with license "other": where its text is (a URL or file)
    total: int = field(init=False)

    def __post_init__(self) -> None:
        self.total = sum(len(rows) for rows in self.rows.values())

    @property
    def aha_rate(self) -> float:
        return self.aha_rows / self.total if self.total else 0.0


def card_facts(ws: Workspace, name: str) -> CardFacts:
    """Counts, verdict methods, aha rate, parameters and models of release ``name``."""
    params = ws.store.release_params(name)
    if params is None:
        known = ", ".join(ws.store.release_names()) or "none yet; run `vlaa-data split`"
        raise VlaaError(f"no release {name!r} (releases: {known})")
    rows = {split: ws.store.release_rows(name, split) for split in SPLITS}
    every = [row for split_rows in rows.values() for row in split_rows]
    by_source = build_status(ws.store).by_source
    columns = card_columns()
    per_source: dict[str, dict[str, int]] = {}
    for source in sorted(set(by_source) | {row.source for row in every}):
        steps = by_source.get(source, {})
        counts = {col: steps.get(step, {}).get("done", 0) for col, step in columns.items()}
        for split, split_rows in rows.items():
            counts[split] = sum(row.source == source for row in split_rows)
        per_source[source] = counts
    methods = Counter(row.verify_method or "none" for row in every)
    release_settings = ws.settings.release
    return CardFacts(
        name=name,
        rows=rows,
        per_source=per_source,
        verify_methods=dict(sorted(methods.items())),
        aha_rows=sum(1 for row in every if (row.aha_count or 0) > 0),
        params=params,
        models=ws.store.models_used(name),
        license=release_settings.license,
        license_name=release_settings.license_name,
        license_link=release_settings.license_link,
    )


def write_card(
    ws: Workspace,
    name: str,
    out: Path,
    *,
    fmt: str = "hf",
    configs: dict[str, Any] | None = None,
    repo_id: str | None = None,
) -> Path:
    """Write ``out/README.md`` and its plots ``out/assets/*.png`` for release ``name``.

    ``configs`` (the hf export's ``{"configs": [...]}``) goes into the metadata verbatim, so
    ``datasets.load_dataset`` finds the splits; ``repo_id`` names the repo in the load example.
    """
    facts = card_facts(ws, name)
    out = Path(out)
    _write_plots(facts, out / "assets")
    path = out / "README.md"
    path.write_text(render_card(facts, out, fmt=fmt, configs=configs, repo_id=repo_id), "utf-8")
    return path


def render_card(
    facts: CardFacts,
    out: Path,
    *,
    fmt: str = "hf",
    configs: dict[str, Any] | None = None,
    repo_id: str | None = None,
) -> str:
    """The card's text; ``out`` is the export folder whose data files name the columns."""
    template = resources.files("vlaa_data.data_cards").joinpath("dataset_card.md").read_text()
    splits = _split_names(configs)
    text = string.Template(template).substitute(
        metadata=yaml.safe_dump(_metadata(facts, configs), sort_keys=False).strip(),
        title=f"VLAA-Thinking-style reasoning data: {facts.name}",
        name=facts.name,
        version=__version__,
        n_sft=len(facts.rows["sft"]),
        n_rl=len(facts.rows["rl"]),
        n_test=len(facts.rows["test"]),
        n_total=facts.total,
        how_to_load=_how_to_load(fmt, repo_id or "USER/DATASET", splits, out),
        columns=_columns(out),
        source_table=_table(
            ["source", *card_columns(), "SFT", "RL", "test"],
            [[src, *counts.values()] for src, counts in facts.per_source.items()],
        ),
        verdict_table=_table(["method", "samples"], list(facts.verify_methods.items())),
        aha_rate=f"{facts.aha_rate:.1%}",
        aha_rows=facts.aha_rows,
        params=json.dumps(facts.params, indent=2, sort_keys=True),
        models_table=_table(["step", "model", "prompt hash", "results"], facts.models)
        if facts.models
        else "No model calls are recorded for these samples (imported or rule-based results).",
        license_note=_license_note(facts),
    )
    _refuse_secrets(text)
    return text


def _metadata(facts: CardFacts, configs: dict[str, Any] | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"license": facts.license or "other"}
    # The Hub's convention for a license it has no id for: license "other", named and linked.
    if facts.license == "other" and facts.license_name:
        meta["license_name"] = facts.license_name
    if facts.license == "other" and facts.license_link:
        meta["license_link"] = facts.license_link
    meta |= {
        "task_categories": TASKS,
        "language": ["en"],
        "tags": TAGS,
        "size_categories": [size_category(facts.total)],
        "pretty_name": f"vlaa-data release {facts.name}",
    }
    if configs:
        meta.update(configs)
    return meta


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` bucket for ``n`` samples."""
    return next((label for limit, label in _SIZES if n < limit), "1B<n<10B")


def _license_note(facts: CardFacts) -> str:
    if facts.license == "other" and (facts.license_name or facts.license_link):
        named = f"`{facts.license_name}`" if facts.license_name else "a license of its own"
        link = f" ({facts.license_link})" if facts.license_link else ""
        return f"Released under {named}{link}; images and questions keep their sources' terms."
    if facts.license:
        return f"Released under `{facts.license}`; images and questions keep their sources' terms."
    return (
        "`other`: no license is set in the workspace settings. Each sample keeps the license "
        "of its source dataset (see the `source` column); reasoning traces were generated by "
        "the models listed above, under their providers' terms."
    )


def _split_names(configs: dict[str, Any] | None) -> list[str]:
    names: list[str] = []
    for config in (configs or {}).get("configs", []):
        files = config.get("data_files", [])
        for entry in files if isinstance(files, list) else []:
            if isinstance(entry, dict) and entry.get("split") not in (None, *names):
                names.append(entry["split"])
    return names or list(SPLITS)


def _how_to_load(fmt: str, repo_id: str, splits: Sequence[str], out: Path) -> str:
    if fmt == "hf":
        lines = ["from datasets import load_dataset", "", f'ds = load_dataset("{repo_id}")']
        lines += [f'{split} = ds["{split}"]' for split in splits]
        return "```python\n" + "\n".join(lines) + "\n```"
    files = _data_files(out)
    listed = "\n".join(f"- `{p.relative_to(out).as_posix()}`" for p in files) or "- (none yet)"
    return (
        f"The files are in the `{fmt}` format (JSON); download the repo "
        f'(`huggingface_hub.snapshot_download("{repo_id}", repo_type="dataset")`) '
        f"and read them directly:\n\n{listed}"
    )


def _data_files(out: Path) -> list[Path]:
    """Parquet and JSON(L) files of an export (not hidden ones, nor LLaMA-Factory's index)."""
    if not out.is_dir():
        return []
    return sorted(
        p
        for p in out.rglob("*")
        if p.is_file()
        and p.suffix in {".parquet", ".jsonl", ".json"}
        and p.name != "dataset_info.json"
        and not any(part.startswith(".") for part in p.relative_to(out).parts)
    )


_COLUMN_DOC = {
    "id": "the sample's id (stable: source and source id)",
    "image": "the image",
    "images": "the image file(s), relative to the repo",
    "messages": "system, user (image and question) and assistant (reasoning, then answer)",
    "prompt": "system and user turns only: the GRPO prompt",
    "question": "the question about the image",
    "reasoning": "the reasoning trace (rewritten to refer to the image)",
    "response": "the answer after the reasoning",
    "solution": "the ground-truth answer (the reward functions' reference)",
    "gold": "the ground-truth answer",
    "source": "the source dataset",
    "reward_type": "digit | choice | math | iou | open: the verifier and GRPO reward",
    "aha_count": "aha keywords found in the reasoning",
    "ppl": "mean perplexity of the response under the PPL filter's models",
}


def _columns(out: Path) -> str:
    """Columns as the export wrote them (first data file), else those of a release row."""
    names: list[tuple[str, str]] = []
    for path in _data_files(out):
        if path.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            nested = {pa.types.is_list: "list", pa.types.is_struct: "struct"}
            names = [
                (f.name, next((k for test, k in nested.items() if test(f.type)), str(f.type)))
                for f in pq.read_schema(path)
            ]
        else:
            names = [(key, type(value).__name__) for key, value in _first_record(path).items()]
        if names:
            break
    if not names:
        names = [(f, "") for f in ReleaseRow.__dataclass_fields__]
    return "\n".join(
        f"- `{col}`"
        + (f" ({kind})" if kind else "")
        + (f": {_COLUMN_DOC[col]}" if col in _COLUMN_DOC else "")
        for col, kind in names
    )


def _first_record(path: Path) -> dict[str, Any]:
    """The first record of a JSON Lines file or of a JSON list; {} for anything else."""
    with path.open(encoding="utf-8") as handle:
        if path.suffix == ".jsonl":
            line = handle.readline()
            data = [json.loads(line)] if line.strip() else []
        else:
            data = json.load(handle)
    first = data[0] if isinstance(data, list) and data else None
    return first if isinstance(first, dict) else {}


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _refuse_secrets(text: str) -> None:
    """No token or key the environment (or the Hub login) holds may end up in a public card."""
    from huggingface_hub import constants

    secrets = [v for k, v in os.environ.items() if any(m in k.upper() for m in _SECRET_MARKERS)]
    login = Path(constants.HF_TOKEN_PATH)  # read directly: get_token() may call the network
    if login.is_file():
        secrets.append(login.read_text(encoding="utf-8").strip())
    for secret in secrets:
        if len(secret) >= 8 and secret in text:
            raise VlaaError("the dataset card would contain a secret (an API key or token)")


def _write_plots(facts: CardFacts, assets: Path) -> None:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.style import context
        from matplotlib.ticker import MaxNLocator
    except ImportError as exc:
        raise VlaaError("the dataset card's plots need matplotlib: pip install matplotlib") from exc
    assets.mkdir(parents=True, exist_ok=True)
    # Default style whatever the user's matplotlibrc says; no Software stamp: same bytes each time.
    with context("default"):
        fig = Figure(figsize=_PLOT_SIZE, dpi=_PLOT_DPI)
        ax = fig.add_subplot()
        # SFT and RL always; the test part only where the release holds one
        plotted = [split for split, rows in facts.rows.items() if rows or split in ("sft", "rl")]
        lengths = {s: [len(r.reasoning.split()) for r in facts.rows[s]] for s in plotted}
        top = max((n for values in lengths.values() for n in values), default=1)
        for split, values in lengths.items():
            ax.hist(values, bins=20, range=(0, max(top, 1)), alpha=0.6, label=split.upper())
        ax.set(xlabel="reasoning length (words)", ylabel="samples", title="Reasoning length")
        _save(FigureCanvasAgg(fig), ax, MaxNLocator, assets / "reasoning_length.png")

        fig = Figure(figsize=_PLOT_SIZE, dpi=_PLOT_DPI)
        ax = fig.add_subplot()
        sources = list(facts.per_source)
        width = 0.8 / len(plotted)
        for index, split in enumerate(plotted):
            offset = (index - (len(plotted) - 1) / 2) * width
            counts = [facts.per_source[s][split] for s in sources]
            ax.bar(
                [p + offset for p in range(len(sources))], counts, width=width, label=split.upper()
            )
        ax.set_xticks(list(range(len(sources))), sources, rotation=30, ha="right")
        ax.set(ylabel="samples", title="Samples per source")
        _save(FigureCanvasAgg(fig), ax, MaxNLocator, assets / "sources.png")


def _save(canvas: Any, ax: Any, locator: type, path: Path) -> None:
    ax.yaxis.set_major_locator(locator(integer=True))
    ax.legend()
    canvas.figure.tight_layout()
    canvas.figure.savefig(path, format="png", dpi=_PLOT_DPI, metadata={"Software": None})
