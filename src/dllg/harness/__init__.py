"""dllg inside lm-evaluation-harness: importing this package registers the lm-eval model `dllg`.

import dllg.harness, lm_eval
lm_eval.simple_evaluate(model="dllg", model_args="config=configs/world.yaml,fusion=dllg", tasks=[...])
"""

from dllg.errors import DllgError

try:
    import lm_eval  # noqa: F401  (an optional dependency: say how to get it)
except ImportError as exc:
    raise DllgError("lm-evaluation-harness is not installed: pip install 'dllg[lmeval]'") from exc

from dllg.harness.lm_eval_model import DllgLM
from dllg.harness.scoring import ContinuationScore, score_continuations

__all__ = ["ContinuationScore", "DllgLM", "score_continuations"]
