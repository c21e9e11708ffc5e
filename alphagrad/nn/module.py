"""``Module``: parameters and sub-modules found by reflection over attributes, PyTorch's API.

    >>> class TwoLayer(Module):
    ...     def __init__(self):
    ...         self.fc1, self.fc2 = Linear(4, 8), Linear(8, 2)
    ...     def forward(self, x):
    ...         return self.fc2(self.fc1(x).relu())
    >>> sorted(TwoLayer().state_dict())
    ['fc1.bias', 'fc1.weight', 'fc2.bias', 'fc2.weight']

Attributes that are ``Parameter``s or ``Module``s are registered by being assigned, in
assignment order; names are dotted paths as in PyTorch. A parameter reachable under two
names (tied weights) appears under both in ``state_dict()`` but once in ``parameters()``.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from alphagrad.autograd.tensor import Tensor
from alphagrad.nn.parameter import Parameter
from alphagrad.tensor.dtypes import FLOAT_DTYPES

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class of every layer and model: subclasses assign parameters and sub-modules as
    attributes in ``__init__`` and compute in ``forward``."""

    training = True

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # ----------------------------------------------------------------- traversal
    def named_children(self) -> Iterator[tuple[str, Module]]:
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def children(self) -> Iterator[Module]:
        for _, module in self.named_children():
            yield module

    def named_modules(self, prefix: str = "", remove_duplicate: bool = True
                      ) -> Iterator[tuple[str, Module]]:
        """This module and every module below it, depth first, with dotted names."""
        seen: set[int] = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if remove_duplicate:
                if id(module) in seen:
                    continue
                seen.add(id(module))
            yield name, module
            below = [(f"{name}.{child_name}" if name else child_name, child)
                     for child_name, child in module.named_children()]
            stack.extend(reversed(below))

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    def named_parameters(self, prefix: str = "", remove_duplicate: bool = True
                         ) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, parameter) pairs; a tied parameter comes once, under its first name."""
        seen: set[int] = set()
        for module_name, module in self.named_modules(prefix, remove_duplicate=False):
            for name, value in vars(module).items():
                if not isinstance(value, Parameter):
                    continue
                if remove_duplicate:
                    if id(value) in seen:
                        continue
                    seen.add(id(value))
                yield (f"{module_name}.{name}" if module_name else name), value

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def num_parameters(self, trainable_only: bool = False) -> int:
        """How many numbers the parameters hold, tied weights counted once."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def apply(self, fn: Callable[[Module], None]) -> Module:
        """Call ``fn`` on every module (children before their parent, as PyTorch), return self."""
        for module in reversed(list(self.modules())):
            fn(module)
        return self

    # ----------------------------------------------------------------- modes and grads
    def train(self, mode: bool = True) -> Module:
        """Training mode (dropout active) for this module and all below it."""
        for module in self.modules():
            module.training = bool(mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.data.fill(0)

    def to(self, dtype: Any) -> Module:
        """Cast every parameter (and its gradient) to float32 or float64, in place; return self."""
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"Module.to: parameters can be float32 or float64, not {dtype}")
        for p in self.parameters():
            p.data = p.data.astype(dtype, copy=False)
            if p.grad is not None:
                p.grad.data = p.grad.data.astype(dtype, copy=False)
        return self

    def float(self) -> Module:
        return self.to(np.float32)

    def double(self) -> Module:
        return self.to(np.float64)

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, np.ndarray]:
        """Every parameter's array by dotted name, tied weights under each of their names.

        The arrays are the parameters' own (not copies), as PyTorch's tensors are.
        """
        return {name: p.data for name, p in self.named_parameters(remove_duplicate=False)}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> IncompatibleKeys:
        """Copy arrays into the parameters (cast to each parameter's dtype).

        Missing keys, unexpected keys (both only when ``strict``) and shape mismatches (always)
        are reported together in one ValueError, before anything is copied. A tied parameter
        (one object under several names, as the GPT's ``lm_head.weight``) needs one of its names.
        ``assign=True`` makes each parameter take the array itself (no copy when its dtype
        already matches), as for a model built under ``nn.init.empty_weights()``.
        """
        own = dict(self.named_parameters(remove_duplicate=False))
        given = {id(p) for name, p in own.items() if name in state_dict}
        missing = [name for name, p in own.items() if id(p) not in given]
        unexpected = [name for name in state_dict if name not in own]
        mismatched = []
        for name, p in own.items():
            if name in state_dict:
                shape = tuple(np.shape(_array(state_dict[name])))
                if shape != p.shape:
                    mismatched.append(f"{name}: checkpoint {shape} vs model {p.shape}")
        problems = []
        if strict and missing:
            problems.append(f"missing keys {_some(missing)}")
        if strict and unexpected:
            problems.append(f"unexpected keys {_some(unexpected)}")
        if mismatched:
            problems.append("shape mismatches " + "; ".join(_some(mismatched)))
        if problems:
            raise ValueError(f"load_state_dict for {type(self).__name__}: " + ", ".join(problems))
        owner: dict[int, Parameter] = {}  # array id -> the parameter that took it
        for name, p in own.items():
            if name not in state_dict:
                continue
            array = _array(state_dict[name])
            if not assign:
                p.data[...] = array
                continue
            taken = owner.setdefault(id(array), p) is not p  # one array, two distinct weights
            if taken or not array.flags.writeable:
                array = np.array(array, dtype=p.dtype)
            p.data = np.ascontiguousarray(array, dtype=p.dtype)
        return IncompatibleKeys(missing, unexpected)

    # ----------------------------------------------------------------- printing
    def extra_repr(self) -> str:
        """What this module prints inside its parentheses (sizes, options)."""
        return ""

    def __repr__(self) -> str:
        lines = []
        for name, value in vars(self).items():
            if isinstance(value, Module):
                lines.append(f"({name}): " + repr(value).replace("\n", "\n  "))
            elif isinstance(value, Parameter) and self.extra_repr() == "":
                lines.append(f"({name}): Parameter{value.shape} {value.dtype}")
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return f"{head}  # {self.num_parameters():,} parameters\n  " + "\n  ".join(lines) + "\n)"


def _array(value: Any) -> np.ndarray:
    return value.data if isinstance(value, Tensor) else np.asarray(value)


def _some(items: list[str], shown: int = 8) -> list[str]:
    """The first ``shown`` items, and how many more there are: an error stays readable."""
    return items if len(items) <= shown else [*items[:shown], f"... {len(items) - shown} more"]


class ModuleList(Module):
    """A list of modules, registered under the names "0", "1", ...

        >>> blocks = ModuleList([Linear(4, 4) for _ in range(3)])
        >>> len(blocks), blocks[-1].weight.shape
        (3, (4, 4))
    """

    def __init__(self, modules: Iterable[Module] = ()):
        for module in modules:
            self.append(module)

    def append(self, module: Module) -> ModuleList:
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList holds Modules, got {type(module).__name__}")
        setattr(self, str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        for module in modules:
            self.append(module)
        return self

    def __len__(self) -> int:
        return sum(1 for _ in self.named_children())

    def __iter__(self) -> Iterator[Module]:
        return self.children()

    def __getitem__(self, index: int | slice) -> Any:
        items = list(self.children())
        if isinstance(index, slice):
            return type(self)(items[index])
        try:
            return items[index]
        except IndexError:
            raise IndexError(f"{type(self).__name__} index {index} out of range for "
                             f"length {len(items)}") from None


class Sequential(ModuleList):
    """Modules applied one after another: ``Sequential(Linear(4, 8), GELU(), Linear(8, 2))``."""

    def __init__(self, *modules: Module):
        super().__init__(modules)

    def forward(self, x: Any) -> Any:
        for module in self.children():
            x = module(x)
        return x


class ModuleDict(Module):
    """Modules by name, registered under those names: ``ModuleDict(wte=Embedding(65, 32))``."""

    def __init__(self, modules: Mapping[str, Module] | None = None, **kwargs: Module):
        for name, module in {**(modules or {}), **kwargs}.items():
            self[name] = module

    def __setitem__(self, name: str, module: Module) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"ModuleDict holds Modules, got {type(module).__name__} for {name!r}")
        if not isinstance(name, str) or not name or "." in name or hasattr(type(self), name):
            raise KeyError(f"ModuleDict: {name!r} cannot name a module (empty, dotted, or an "
                           "attribute of ModuleDict)")
        setattr(self, name, module)

    def __getitem__(self, name: str) -> Module:
        value = vars(self).get(name)
        if not isinstance(value, Module):
            raise KeyError(f"ModuleDict has no module {name!r}; it has {list(self.keys())}")
        return value

    def __contains__(self, name: str) -> bool:
        return isinstance(vars(self).get(name), Module)

    def __len__(self) -> int:
        return sum(1 for _ in self.named_children())

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def keys(self) -> list[str]:
        return [name for name, _ in self.named_children()]

    def values(self) -> list[Module]:
        return list(self.children())

    def items(self) -> list[tuple[str, Module]]:
        return list(self.named_children())
