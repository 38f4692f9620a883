"""A release at scale: N synthetic verified samples through filter aha -> split -> export hf.

    python benchmarks/release_scale.py                # 200,000 samples
    python benchmarks/release_scale.py --samples 20000

The workspace is written straight into the store (samples with distinct small PNG images and
done caption, distill, rewrite and verify results with stand-in reasoning of 60-400 words,
about a fifth with an aha keyword), as a long pipeline run would leave it; building it is not
timed; it runs in a child process. Then each stage runs as the CLI runs it and the script
prints its time and the process's peak RSS after it.

Goals: the three stages together <= 10 minutes, peak RSS <= 2 GB.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from vlaa_data.filters.aha import AhaOptions, run_aha
from vlaa_data.release.export import export_release
from vlaa_data.steps.split import SplitOptions, run_split
from vlaa_data.workspace import Workspace, init_workspace

_WORDS = [
    *["the", "cube", "is", "red", "and", "the", "sphere", "is", "small"],
    *["so", "we", "count", "each", "object", "in", "the", "scene"],
]
_AHA = ["Wait, let me count again.", "Hmm, I should double-check that."]
_SOURCES = ["clevr_math", "geoqa170k", "math_puma", "arxivqa", "docvqa"]
_BATCH = 20_000


def _png(i: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (i % 256, (i // 256) % 256, (i // 65536) % 256)).save(
        buffer, format="PNG"
    )
    return buffer.getvalue()


def build(root: Path, n: int, seed: int = 0) -> None:
    import hashlib

    rng = random.Random(seed)
    with Workspace.open(root, write=True) as ws:
        run_id = ws.store.start_run("benchmark build", "0", {})
        for start in range(0, n, _BATCH):
            images, samples, results = [], [], []
            count = min(_BATCH, n - start)
            ids = ws.store.allocate_result_ids(4 * count)
            for k in range(count):
                i = start + k
                data = _png(i)
                sha = hashlib.sha256(data).hexdigest()
                path = f"images/{sha[:2]}/{sha}.png"
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                (root / path).write_bytes(data)
                images.append(
                    {
                        "sha": sha,
                        "path": path,
                        "width": 16,
                        "height": 16,
                        "format": "PNG",
                        "bytes": len(data),
                    }
                )
                source = _SOURCES[i % len(_SOURCES)]
                answer = str(rng.randint(0, 20))
                samples.append(
                    {
                        "id": f"{source}/{i}",
                        "source": source,
                        "source_id": str(i),
                        "image_sha": sha,
                        "question": f"How many objects are there? ({i})",
                        "answer": answer,
                        "reward_type": "digit",
                        "context": "{}",
                        "run_id": run_id,
                    }
                )
                words = " ".join(rng.choices(_WORDS, k=rng.randint(60, 400)))
                if rng.random() < 0.2:
                    words += " " + rng.choice(_AHA)
                text = {"reasoning": words, "answer": f"Answer: {answer}"}
                outputs = [
                    ("caption", {"caption": "Objects on a floor."}, "imported"),
                    ("distill", text, "imported"),
                    ("rewrite", text, "unchanged"),
                    ("verify", {"verdict": "correct", "extracted": answer}, "digit"),
                ]
                parent = None
                for j, (step, output, method) in enumerate(outputs):
                    result_id = ids[4 * k + j]
                    results.append(
                        {
                            "id": result_id,
                            "sample_id": f"{source}/{i}",
                            "step": step,
                            "attempt": 1,
                            "status": "done",
                            "output": json.dumps(output),
                            "reason": None,
                            "method": method,
                            "model": None,
                            "prompt_hash": None,
                            "run_id": run_id,
                            "parent_id": parent,
                        }
                    )
                    parent = result_id
            ws.store.write_collect_batch(
                images=images, samples=samples, rejects=[], results=results
            )
        ws.store.finish_run(run_id, "finished", {})


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument(
        "--workspace",
        type=Path,
        help="build into this folder and keep it; a folder already built is reused",
    )
    parser.add_argument("--build-into", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_into:
        build(args.build_into, args.samples)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        root = args.workspace or Path(tmp) / "ws"
        if not (root / "vlaa.toml").exists():
            init_workspace(root)
            started = time.monotonic()
            # In a process of its own, so that the peak RSS below is the stages' alone.
            command = [sys.executable, __file__, "--samples", str(args.samples), "--build-into"]
            subprocess.run([*command, str(root)], check=True)
            seconds = time.monotonic() - started
            print(f"built {args.samples:,} samples in {seconds:.0f} s (not timed)")
        print(f"{'stage':<14}{'seconds':>9}{'peak RSS MB':>14}")
        total = 0.0
        with Workspace.open(root, write=True) as ws:
            print(f"store memory_limit {ws.settings.store.memory_limit}")
            for stage, run in (
                ("filter aha", lambda: run_aha(ws, AhaOptions())),
                ("split", lambda: run_split(ws, SplitOptions(name="v1", replace=True))),
                ("export hf", lambda: export_release(ws, "v1", "hf", Path(tmp) / "out")),
            ):
                started = time.monotonic()
                report = run()
                seconds = time.monotonic() - started
                total += seconds
                print(f"{stage:<14}{seconds:>9.1f}{_peak_rss_mb():>14,.0f}")
                if stage == "split":
                    counts = report.to_dict()
                    print(f"  sft {counts['sft']:,}, rl {counts['rl']:,}")
        print(f"{'total':<14}{total:>9.1f}   (goal: <= 600 s, peak RSS <= 2,048 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
