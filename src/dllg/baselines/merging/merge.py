"""`merge_experts`: materialise the sources, check shapes, and let mergekit write the merged HF folder."""

import json
import tempfile
from pathlib import Path
from typing import Any

from dllg.baselines.merging.base import get_merge
from dllg.baselines.merging.sources import check_same_shapes, materialise, stored_dtype
from dllg.errors import DllgError

MARKER = "dllg-merge.json"  # what was merged and how, for results tables and the eval runner


def _mergekit() -> tuple[Any, Any, Any]:
    try:
        from mergekit.config import MergeConfiguration
        from mergekit.merge import run_merge
        from mergekit.options import MergeOptions
    except ImportError as exc:
        raise DllgError("merging needs mergekit: pip install 'dllg[merge]' (mergekit 0.1.5)") from exc
    return MergeConfiguration, run_merge, MergeOptions


def merge_experts(
    method: str,
    sources: list[str],
    out_dir: str | Path,
    base: str | None = None,
    dtype: str | None = None,
    **options: Any,
) -> Path:
    """Merge `sources` (anything `load_expert` accepts) with `method`; returns the folder (an expert).

    Options by method: linear `weights` (normalised), slerp `t`, task_arithmetic `lambda_` (and `base`).
    """
    spec = get_merge(method)
    if "lambda" in options:  # `lambda` is a Python keyword; accept it spelt either way
        options["lambda_"] = options.pop("lambda")
    unknown = sorted(k for k, v in options.items() if v is not None and k not in spec.options)
    if unknown:
        raise DllgError(
            f"merge method {method!r} takes no option {', '.join(unknown)}: it takes {spec.options}"
        )
    if not sources:
        raise DllgError("no experts to merge: name at least one with --experts")
    if base is not None and not spec.needs_base:
        raise DllgError(f"merge method {method!r} takes no base model: drop --base")
    MergeConfiguration, run_merge, MergeOptions = _mergekit()
    out = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="dllg-merge-") as scratch:
        names = [*sources, *([base] if base else [])]
        folders = [materialise(name, Path(scratch) / str(i)) for i, name in enumerate(names)]
        check_same_shapes(folders, names)
        paths = [str(f) for f in folders]
        plan = spec.plan(paths[: len(sources)], paths[len(sources)] if base else None, options)
        plan["dtype"] = dtype or stored_dtype(folders[0])
        config = MergeConfiguration.model_validate(plan)
        try:
            run_merge(config, str(out), MergeOptions(copy_tokenizer=True, quiet=True, write_model_card=False))
        except (RuntimeError, ValueError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DllgError(f"mergekit could not {method}-merge {', '.join(sources)}: {first}") from exc
    record = {"method": method, "sources": sources, "base": base, "dtype": plan["dtype"], **options}
    (out / MARKER).write_text(json.dumps(record, indent=2) + "\n")
    return out
