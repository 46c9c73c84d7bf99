"""The local inference engine behind ``LocalQwen``: continuous batching, prefix cache, precision choice.

Public API (see the contract in the package docs)::

    engine = get_engine("path/to/checkpoint", dtype=None)      # one engine per process per model
    handle = engine.submit(prompt_ids, SamplingParams(max_new_tokens=64), constraint=None, priority=0)
    async for token_id in handle: ...
    result = await handle.result()                             # GenerationResult

Importing this package imports torch (it is only imported lazily by ``LocalQwen``).
"""

from tq_agents.models._engine._engine import Engine
from tq_agents.models._engine._kv import PrefixCache
from tq_agents.models._engine._loader import (
    DEFAULT_DTYPE,
    DTYPES,
    close_all_engines,
    get_engine,
    load_model,
    quantize_int8,
)
from tq_agents.models._engine._types import GenerationHandle, GenerationResult, SamplingParams, TokenConstraint

__all__ = [
    "DEFAULT_DTYPE",
    "DTYPES",
    "Engine",
    "GenerationHandle",
    "GenerationResult",
    "PrefixCache",
    "SamplingParams",
    "TokenConstraint",
    "close_all_engines",
    "get_engine",
    "load_model",
    "quantize_int8",
]
