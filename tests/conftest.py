"""Fixtures and builders shared by several test files.

- ``one_thread``: torch on one thread for a whole test module (tiny matrices gain nothing from threads,
  and on a shared CPU OpenMP spinning makes them much slower); the count is restored afterwards. Opt in
  with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
- ``mini`` / ``tokenizer``: MUSE-mini and the word tokenizer of its corpus, built once per module.
- :func:`tiny_model` and :func:`fact_batch`: a tiny random Llama and a batch of random "facts" (import
  them with ``from conftest import ...``: module-level constants are built from them).

torch, transformers and ``utils`` are imported where they are used, so that collecting the light test
files stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import torch
    from transformers import LlamaForCausalLM

    from utils.data import MuseData

#: vocabulary of :func:`tiny_model` and :func:`fact_batch`
VOCAB = 64


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for the module that asks for it; the previous count is restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def mini() -> MuseData:
    from utils.data import load_muse_mini

    return load_muse_mini()


@pytest.fixture(scope="module")
def tokenizer(mini):
    from utils.models import build_word_tokenizer, corpus_texts

    return build_word_tokenizer(corpus_texts(mini))


def tiny_model(seed: int = 0, vocab: int = VOCAB, layers: int = 2, hidden: int = 32) -> LlamaForCausalLM:
    """A random Llama in eval mode (``seed`` seeds torch's global generator), untied output head."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers, num_attention_heads=2,
                      num_key_value_heads=2, vocab_size=vocab, tie_word_embeddings=False)
    return LlamaForCausalLM(cfg).eval()


def fact_batch(n: int, seed: int, length: int = 6, answer_tokens: int = 1) -> dict[str, torch.Tensor]:
    """Random 'facts' whose loss covers the last ``answer_tokens`` tokens (the answer)."""
    import torch

    from utils.unlearning import IGNORE_INDEX

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, VOCAB, (n, length), generator=g)
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, -answer_tokens:] = ids[:, -answer_tokens:]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
