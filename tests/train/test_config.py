import dataclasses
import json
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphagrad.train.config import TrainConfig

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


def test_defaults_are_the_documented_ones():
    c = TrainConfig()
    assert (c.n_layer, c.n_head, c.n_embd, c.block_size, c.dropout, c.bias) == (
        4, 4, 128, 64, 0.0, True)
    assert (c.batch_size, c.grad_accum_steps, c.max_iters, c.learning_rate, c.min_lr) == (
        12, 1, 2000, 1e-3, 1e-4)
    assert (c.warmup_iters, c.weight_decay, c.beta1, c.beta2, c.grad_clip) == (
        100, 0.1, 0.9, 0.99, 1.0)
    assert (c.eval_interval, c.eval_iters, c.log_interval, c.keep_last, c.seed) == (
        250, 20, 10, 3, 1337)
    assert c.lr_decay_iters is None and c.checkpoint_interval is None and c.patience is None
    assert c.validate() is c
    r = c.resolved()
    assert r.lr_decay_iters == 2000 and r.checkpoint_interval == 250


def test_toml_round_trip_and_independent_parse(tmp_path):
    c = TrainConfig().replace(data_dir='data/"quoted" \\ dir\n\ttab é \x7f', patience=3,
                              learning_rate=3e-5, dropout=0.1, bias=False, num_threads=2,
                              preset="char-tiny", min_lr=0.0)
    text = c.to_toml()
    parsed = tomllib.loads(text)
    assert parsed == {k: v for k, v in c.to_dict().items() if v is not None}
    (tmp_path / "c.toml").write_text(text, encoding="utf-8")
    assert TrainConfig.from_toml(tmp_path / "c.toml") == c
    assert TrainConfig.from_dict(c.to_dict()) == c


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=20), lr=st.floats(1e-12, 10.0), n_head=st.integers(1, 8),
       decay=st.none() | st.integers(1, 10**12))
def test_toml_round_trip_fuzz(tmp_path_factory, text, lr, n_head, decay):
    c = TrainConfig(out_dir=text, learning_rate=lr, min_lr=0.0, n_head=n_head,
                    n_embd=16 * n_head, lr_decay_iters=decay)
    path = tmp_path_factory.mktemp("toml") / "c.toml"
    path.write_text(c.to_toml(), encoding="utf-8")
    assert TrainConfig.from_toml(path) == c


def write(tmp_path, text):
    path = tmp_path / "train.toml"
    path.write_text(text)
    return path


def test_from_toml_errors(tmp_path):
    with pytest.raises(ValueError, match=r"unknown key 'lr' in .*train.toml; known keys: model, n_layer"):
        TrainConfig.from_toml(write(tmp_path, "lr = 0.1\n"))
    with pytest.raises(ValueError, match=r"'learning_rate' must be a float, got 'abc'"):
        TrainConfig.from_toml(write(tmp_path, 'learning_rate = "abc"\n'))
    with pytest.raises(ValueError, match=r"'n_layer' must be an int, got True"):
        TrainConfig.from_toml(write(tmp_path, "n_layer = true\n"))
    with pytest.raises(ValueError, match=r"'patience' must be an int or none, got 1.5"):
        TrainConfig.from_toml(write(tmp_path, "patience = 1.5\n"))
    with pytest.raises(ValueError, match="unknown key 'optimizer'"):
        TrainConfig.from_toml(write(tmp_path, "[optimizer]\nn_layer = 2\n"))
    with pytest.raises(ValueError, match="is not valid TOML"):
        TrainConfig.from_toml(write(tmp_path, "n_layer = = 2\n"))
    with pytest.raises(ValueError, match=r"n_embd \(130\) must be divisible by n_head \(4\)"):
        TrainConfig.from_toml(write(tmp_path, "n_embd = 130\n"))
    with pytest.raises(FileNotFoundError, match="missing.toml"):
        TrainConfig.from_toml(tmp_path / "missing.toml")
    c = TrainConfig.from_toml(write(tmp_path, "learning_rate = 1\nn_layer = 2\n"))
    assert c.learning_rate == 1.0 and isinstance(c.learning_rate, float) and c.n_layer == 2


def test_overrides_parse_by_field_type():
    c = TrainConfig(patience=5).with_overrides(
        ["n_layer=6", "learning-rate = 3e-4", "bias=no", "patience=none", "data_dir=a=b",
         "dropout=0", "lr_decay_iters=1_000"])
    assert (c.n_layer, c.learning_rate, c.bias, c.patience, c.data_dir, c.dropout) == (
        6, 3e-4, False, None, "a=b", 0.0)
    assert c.lr_decay_iters == 1000 and isinstance(c.dropout, float)
    with pytest.raises(ValueError, match=r"'learning_rate' must be a float, got 'abc'"):
        c.with_overrides(["learning_rate=abc"])
    with pytest.raises(ValueError, match=r"'n_layer' must be an int, got '2.5'"):
        c.with_overrides(["n_layer=2.5"])
    with pytest.raises(ValueError, match=r"'bias' must be a bool, got 'maybe'"):
        c.with_overrides(["bias=maybe"])
    with pytest.raises(ValueError, match="'n_layer' must be an int, got 'none'"):
        c.with_overrides(["n_layer=none"])
    with pytest.raises(ValueError, match="must look like key=value"):
        c.with_overrides(["n_layer"])
    with pytest.raises(ValueError, match="unknown key 'layers' in the overrides"):
        c.with_overrides(["layers=3"])


def test_validate_lists_every_problem():
    bad = dataclasses.replace(TrainConfig(), n_embd=130, dropout=1.0, min_lr=0.1, batch_size=0,
                              beta2=1.0, grad_clip=-1.0, dtype="float16", patience=0,
                              gelu_approximate="exact")
    with pytest.raises(ValueError) as info:
        bad.validate()
    message = str(info.value)
    for part in ("n_embd (130) must be divisible by n_head (4)", "dropout must be in [0, 1)",
                 "min_lr must be in [0, learning_rate]", "batch_size must be in [1, 65,536], got 0",
                 "beta2 must be in [0, 1)", "grad_clip must be non-negative",
                 "dtype must be 'float32' or 'float64'", "patience must be in [1, ",
                 "gelu_approximate must be 'tanh' or 'none'"):
        assert part in message
    with pytest.raises(ValueError, match="learning_rate must be positive"):
        TrainConfig().replace(learning_rate=math.nan)
    with pytest.raises(ValueError, match="unknown key 'lr' in replace"):
        TrainConfig().replace(lr=1.0)
    assert TrainConfig().replace(n_head=5, n_embd=10).n_embd == 10


@pytest.mark.parametrize("line, message", [
    ("block_size = 1e8", "'block_size' must be an int"),
    ("block_size = 100000000", "block_size must be in [1, 1,048,576], got 100,000,000"),
    ("n_layer = 12345678901234567890", "n_layer must be in [1, 1,024], got"),
    ("n_embd = 1_000_000_000", "n_embd must be in [1, 65,536]"),
    ("batch_size = 100000000", "batch_size must be in [1, 65,536]"),
    ("max_iters = 100000000000000000000", "max_iters must be in [1, 1,000,000,000,000]"),
    ("seed = 18446744073709551616", "seed must be in [0, 2**64), got 18446744073709551616"),
])
def test_every_setting_is_bounded_before_anything_is_built(tmp_path, line, message):
    path = tmp_path / "train.toml"
    path.write_text(line + "\n")
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainConfig.from_toml(path)
    assert TrainConfig().replace(seed=2**64 - 1).seed == 2**64 - 1  # the largest seed is fine


@pytest.mark.parametrize("text, message", [
    ("a" + ".a" * 100_000 + " = 1\n", "a dotted key of 64 or more parts"),  # was 40+ GB
    ("[" + "a." * 100_000 + "a]\n", "a dotted key of 64 or more parts"),
    ("x = {" + "a." * 100_000 + "a = 1}\n", "a dotted key of 64 or more parts"),
    ("n_layer = " + "[" * 100_000 + "]" * 100_000 + "\n", "nested too deeply"),
    ("x = " + "{a = " * 50_000 + "1" + "}" * 50_000 + "\n", "nested too deeply"),
    ("# " + "x" * (1 << 20) + "\n", "larger than 1 MiB"),
    ("n_layer = 2 # \udcff\n", "is not UTF-8 text"),
])
def test_crafted_toml_files_are_refused_within_bounds(tmp_path, bounded_call, text, message):
    path = tmp_path / "train.toml"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with bounded_call(), pytest.raises(ValueError, match=re.escape(message)) as info:
        TrainConfig.from_toml(path)
    assert str(path) in str(info.value)


def test_a_prompt_of_many_short_sentences_is_no_dotted_key(tmp_path):
    path = tmp_path / "train.toml"
    path.write_text('sample_prompt = "' + "Go. Stop. " * 100 + '"\n')
    assert TrainConfig.from_toml(path).sample_prompt == "Go. Stop. " * 100


def toml_value(value) -> str:
    """``value`` written as a TOML value (tomllib reads it back as ``value``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return "nan" if math.isnan(value) else {math.inf: "inf", -math.inf: "-inf"}.get(
            value, repr(value))
    if isinstance(value, str):  # JSON's escapes are TOML's, but TOML also escapes DEL
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(map(toml_value, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_value(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


TOML_VALUES = st.one_of(
    st.booleans(), st.integers(-2**63, 2**63 - 1), st.integers(0, 5000), st.floats(),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=8),  # TOML has no lone surrogates
    st.lists(st.integers(-3, 2**40), max_size=3),
    st.dictionaries(st.text("ab.", max_size=3), st.integers(-3, 2**40), max_size=2),
    st.recursive(st.integers(0, 3), lambda inner: st.lists(inner, min_size=1, max_size=1),
                 max_leaves=200),
)


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from([f.name for f in dataclasses.fields(TrainConfig)]),
       value=TOML_VALUES)
def test_property_hostile_toml_values(tmp_path_factory, bounded_call, key, value):
    """One setting with a hostile value (wrong type, huge, nested): a ValueError naming the file
    and the setting, or a valid config holding that value; nothing large is ever built."""
    path = tmp_path_factory.mktemp("toml") / "train.toml"
    path.write_text(f"{key} = {toml_value(value)}\n")
    try:
        with bounded_call():
            config = TrainConfig.from_toml(path)
    except ValueError as e:
        assert "train.toml" in str(e) and key in str(e), str(e)
        return
    held = getattr(config, key)
    expected = float(value) if isinstance(held, float) else value  # ints are floats' values too
    assert held == expected or math.isnan(expected)  # NaN only where the model has no use for it
