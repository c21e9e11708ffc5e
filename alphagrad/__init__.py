"""alphagrad: train and run GPT-style language models on a CPU."""

__version__ = "0.1.0"
