"""T5 text conditioning of the pixel stages: prompt cleaning, tokenizing to 77 tokens, encoding.

The pixel stages (keyframes, interpolation, sr1 and its first frame) all condition on the T5 v1.1 XXL
encoder shipped with show-1-base. The chain encodes every text a run needs (the prompt and each running
pixel stage's negative prompt) in one call, before any stage runs, and the encoder leaves the accelerator
and the process right after: the 4.7 B-parameter encoder is never resident next to a UNet.
"""

from __future__ import annotations

import html
import importlib.util
import logging
import re
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

import torch

from show1_cli.errors import InputError
from show1_cli.runtime import ModelStore

logger = logging.getLogger("show1")

COMPONENT = "show-1-base"
MAX_TOKENS = 77
ENCODER_KEY = f"{COMPONENT}/text_encoder"


# ------------------------------------------------------------------------------------------------
# Prompt cleaning


def full_cleaning_available() -> bool:
    """Whether DeepFloyd IF's caption-cleaning dependencies (beautifulsoup4, ftfy: `pip install show1-cli[clean]`) are installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("bs4", "ftfy"))


def clean_prompt(text: str, full: bool = False) -> str:
    """Prepare a caption for T5.

    By default exactly as the official Show-1 script does on a plain install: lower-cased and stripped, so
    the same command gives the same embeddings on every machine. With `full` (`--clean-prompt`), DeepFloyd
    IF's clean-up as well: mojibake fixed, HTML entities and tags, URLs, @handles and stray punctuation
    removed, dashes and quotes unified; it needs the `clean` extra.
    """
    if not full:
        return text.lower().strip()
    if not full_cleaning_available():
        raise InputError("--clean-prompt needs beautifulsoup4 and ftfy", "pip install 'show1-cli[clean]', or drop --clean-prompt")
    return _clean_caption(text)


_URL = re.compile(r"\b(?:https?://|www\.)\S+|\b[\w.-]+\.(?:com|org|net|io|co|ru|de|uk|jp|cn|info)(?:/\S*)?\b", re.IGNORECASE)
_HANDLE = re.compile(r"@[\w\-]+")
_DASHES = re.compile(r"[\u2010-\u2015\u2212\u2e3a\u2e3b\ufe58\ufe63\uff0d]")
_DOUBLE_QUOTES = re.compile(r"[\u201c\u201d\u201e\u00ab\u00bb\u2033]")
_SINGLE_QUOTES = re.compile(r"[\u2018\u2019\u201a\u2032`\u00b4]")
_FILE_NAME = re.compile(r"\b\S+\.(?:jpe?g|png|gif|webp|bmp|mp4|avi|mov|pdf|txt)\b", re.IGNORECASE)
_IMAGE_ID = re.compile(r"\b(?:img|dsc|image|photo)[_\- ]?\d+\b", re.IGNORECASE)
_HASH_NUMBER = re.compile(r"#\d+")
_REPEATED_PUNCTUATION = re.compile(r"([.,!?;:\-_*])\1+")
_SPACES = re.compile(r"\s+")
_EDGE_PUNCTUATION = re.compile(r"^[\s\-_.,;:!?*'\"]+|[\s\-_,;:*'\"]+$")


def _clean_caption(text: str) -> str:
    import ftfy
    from bs4 import BeautifulSoup

    text = ftfy.fix_text(urllib.parse.unquote_plus(str(text)))
    text = html.unescape(html.unescape(text)).strip().lower()
    text = _URL.sub("", text)
    text = BeautifulSoup(text, features="html.parser").get_text()
    text = _HANDLE.sub("", text)
    text = _DASHES.sub("-", text)
    text = _DOUBLE_QUOTES.sub('"', text)
    text = _SINGLE_QUOTES.sub("'", text)
    text = _FILE_NAME.sub("", text)
    text = _IMAGE_ID.sub("", text)
    text = _HASH_NUMBER.sub("", text)
    text = _REPEATED_PUNCTUATION.sub(r"\1", text)
    text = _SPACES.sub(" ", text)
    return _EDGE_PUNCTUATION.sub("", text).strip()


# ------------------------------------------------------------------------------------------------
# Encoding


def load_tokenizer(component_dir: Path):
    from transformers import T5Tokenizer

    return T5Tokenizer.from_pretrained(component_dir / "tokenizer")


def load_text_encoder(component_dir: Path, dtype: torch.dtype) -> torch.nn.Module:
    """The T5 encoder of `component_dir/text_encoder` on the CPU in `dtype` (the hub stores fp32 shards)."""
    from transformers import T5EncoderModel

    return T5EncoderModel.from_pretrained(component_dir / "text_encoder", dtype=dtype, low_cpu_mem_usage=True)


def tokenize(tokenizer, text: str, full_cleaning: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), each (1, 77): the cleaned text, cut to 77 tokens with a warning, padded."""
    cleaned = clean_prompt(text, full_cleaning)
    full = tokenizer(cleaned, add_special_tokens=True).input_ids
    if len(full) > MAX_TOKENS:
        dropped = tokenizer.decode(full[MAX_TOKENS - 1 :], skip_special_tokens=True)
        logger.warning("prompt is %d tokens long; the text encoder reads %d, so this end is ignored: %r", len(full), MAX_TOKENS, dropped)
    tokens = tokenizer(
        cleaned, padding="max_length", max_length=MAX_TOKENS, truncation=True, add_special_tokens=True, return_tensors="pt"
    )
    return tokens.input_ids, tokens.attention_mask


@torch.no_grad()
def encode_texts(texts: Iterable[str], models: ModelStore, component_dir: Path, full_cleaning: bool = False) -> dict[str, torch.Tensor]:
    """T5 embeddings, (1, 77, hidden) on the CPU in the runtime dtype, of every distinct text.

    The encoder is loaded through `models` (once), runs on the runtime's device, and is dropped from the
    store as soon as all texts are encoded, so no stage ever shares the accelerator (or RAM) with it.
    Callers pass every text they will need at once (the chain does, for a whole batch of prompts).
    """
    distinct = list(dict.fromkeys(texts))
    if not distinct:
        return {}
    runtime = models.runtime
    tokenizer = load_tokenizer(component_dir)
    encoder = models.get(ENCODER_KEY, lambda: load_text_encoder(component_dir, runtime.dtype))
    embeddings: dict[str, torch.Tensor] = {}
    try:
        for text in distinct:
            input_ids, attention_mask = tokenize(tokenizer, text, full_cleaning)
            states = encoder(input_ids=input_ids.to(runtime.device), attention_mask=attention_mask.to(runtime.device))
            embeddings[text] = states.last_hidden_state.to("cpu", runtime.dtype)
    finally:
        models.drop(ENCODER_KEY)
    return embeddings
