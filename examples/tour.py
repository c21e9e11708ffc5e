# %% [markdown]
# # A tour of alphagrad
#
# Tensors, autograd, `nn` modules, and a tiny GPT trained on a few lines of text, then sampled.
# Run it as a script (`python examples/tour.py`, about half a minute with the first compile) or
# cell by cell in an editor that understands `# %%`.

# %%
import numpy as np

import alphagrad as ag
from alphagrad import functional as F
from alphagrad import nn
from alphagrad.tokenizers import CharTokenizer

ag.manual_seed(0)  # every random draw the library makes follows this seed

# %% [markdown]
# ## Tensors
# A `Tensor` wraps a NumPy array; names and broadcasting follow PyTorch.

# %%
a = ag.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
b = ag.ones(3)
print("a + b =", (a + b).tolist())
print("a @ a.T =", (a @ a.T).tolist())
print("a.sum(dim=0) =", a.sum(dim=0).tolist(), "  a.numpy() is a", type(a.numpy()).__name__)

# %% [markdown]
# ## Autograd
# `requires_grad=True` records the operations; `backward()` fills `.grad` with d(out)/d(x).
# For y = sum(x²) the gradient is 2x.

# %%
x = ag.tensor([1.0, 2.0, 3.0], requires_grad=True)
y = (x * x).sum()
y.backward()
print("d sum(x^2) / dx =", x.grad.tolist())

# Gradients accumulate until reset, as in PyTorch.
(x * 3).sum().backward()
print("after another backward (+3 each) =", x.grad.tolist())
x.grad = None

# Inside no_grad() nothing is recorded: the result needs no gradient.
with ag.no_grad():
    z = x * 2
print("under no_grad, z.requires_grad =", z.requires_grad)

# gradcheck compares backward() with finite differences, in float64.
w = ag.randn(3, 4, dtype="float64", requires_grad=True)
print("gradcheck(log_softmax) =", ag.gradcheck(lambda w: F.log_softmax(w, dim=1) * w, [w]))

# %% [markdown]
# ## Modules
# A `Module` finds its parameters by looking at its attributes; `Sequential` chains modules.

# %%
mlp = nn.Sequential(nn.Linear(4, 16), nn.GELU(), nn.Linear(16, 2))
print("MLP parameters:", [(name, p.shape) for name, p in mlp.named_parameters()])
inputs = ag.randn(8, 4)
labels = ag.tensor([0, 1, 1, 0, 1, 0, 0, 1])
loss = F.cross_entropy(mlp(inputs), labels)
loss.backward()
print(f"MLP loss {loss.item():.4f}; first layer's weight grad has shape",
      mlp[0].weight.grad.shape)

# %% [markdown]
# ## A tiny GPT
# A character tokenizer, a two-layer GPT, and a plain training loop with AdamW.

# %%
TEXT = (
    "the quick brown fox jumps over the lazy dog.\n"
    "a lazy dog sleeps in the warm sun all day.\n"
    "the brown fox runs home before the night.\n"
) * 20
tokenizer = CharTokenizer.train(TEXT)
data = np.array(tokenizer.encode(TEXT), dtype=np.int64)  # (N,)
config = nn.GPTConfig(block_size=32, vocab_size=tokenizer.vocab_size, n_layer=2, n_head=2,
                      n_embd=48)
model = nn.GPT(config)
optimizer = model.configure_optimizers(weight_decay=0.1, learning_rate=3e-3, betas=(0.9, 0.99))
print(f"GPT with {model.num_parameters():,} parameters, vocabulary of {tokenizer.vocab_size}")

rng = np.random.default_rng(0)
batch_size, steps = 16, 60
for step in range(steps):
    starts = rng.integers(0, len(data) - config.block_size - 1, size=batch_size)  # (B,)
    windows = data[starts[:, None] + np.arange(config.block_size + 1)]  # (B, T+1)
    _, loss = model(windows[:, :-1], windows[:, 1:])
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if step % 10 == 0 or step == steps - 1:
        print(f"step {step:3d}  loss {loss.item():.4f}")

# %% [markdown]
# ## Sampling
# `generate` continues a prompt; `temperature` and `top_k` shape the draw, `seed` repeats it.

# %%
model.eval()
prompt = np.array([tokenizer.encode("the ")], dtype=np.int64)  # (1, T)
out = model.generate(prompt, max_new_tokens=60, temperature=0.8, top_k=10, seed=0)  # (1, T + 60)
print("sample:", repr(tokenizer.decode(out.numpy()[0].tolist())))
