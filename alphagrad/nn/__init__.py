"""Neural-network building blocks: ``Module`` and its containers, layers, init, the GPT and
Llama model families, generation, and weight files (safetensors, Hugging Face names).

    >>> import alphagrad as ag
    >>> model = ag.nn.GPT(ag.nn.GPTConfig(block_size=64, vocab_size=65, n_layer=2, n_head=4,
    ...                                   n_embd=64))
"""

from alphagrad.nn import init, optim, utils
from alphagrad.nn.gpt import GPT, GPTConfig
from alphagrad.nn.layers import (
    GELU,
    Dropout,
    Embedding,
    LayerNorm,
    Linear,
    ReLU,
    RMSNorm,
    Sigmoid,
    SiLU,
    Tanh,
)
from alphagrad.nn.llama import Llama, LlamaConfig
from alphagrad.nn.module import Module, ModuleDict, ModuleList, Sequential
from alphagrad.nn.parameter import Parameter
from alphagrad.nn.safetensors import load_safetensors, save_safetensors

__all__ = [
    "GELU",
    "GPT",
    "Dropout",
    "Embedding",
    "GPTConfig",
    "LayerNorm",
    "Linear",
    "Llama",
    "LlamaConfig",
    "Module",
    "ModuleDict",
    "ModuleList",
    "Parameter",
    "RMSNorm",
    "ReLU",
    "Sequential",
    "SiLU",
    "Sigmoid",
    "Tanh",
    "init",
    "load_safetensors",
    "optim",
    "save_safetensors",
    "utils",
]
