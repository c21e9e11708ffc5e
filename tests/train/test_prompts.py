"""Sample prompts: a setting, the preset's on its built-in corpus, the data's own otherwise."""

from __future__ import annotations

from alphagrad.tokenizers import CharTokenizer
from alphagrad.train import TrainConfig, Trainer, prepare
from alphagrad.train.sampling import line_starts

TEXT = "".join(f"ROMEO{i % 7}: speak again, bright angel\nJULIET: ay me\n" for i in range(300))


def _trainer(tmp_path, **fields):
    tok = CharTokenizer.train(TEXT)
    prepare(TEXT, tok, tmp_path / "data")
    config = TrainConfig(data_dir=str(tmp_path / "data"), n_layer=1, n_head=2, n_embd=16,
                         block_size=16, batch_size=2, max_iters=1, **fields)
    return Trainer(config, runs_root=tmp_path / "runs")


def test_prompts_come_from_the_validation_text_on_a_users_corpus(tmp_path):
    trainer = _trainer(tmp_path, preset="char-tiny")  # its "def "/"class " fit Python, not this
    prompts = trainer.default_prompts()
    assert prompts == line_starts(trainer.val_data, trainer.tokenizer, 2) and len(prompts) == 2
    val_text = trainer.tokenizer.decode(trainer.val_data.tokens.tolist())
    for prompt in prompts:
        assert ("\n" + prompt) in val_text and prompt.split()[0] in ("JULIET:", *(
            f"ROMEO{i}:" for i in range(7)))
    assert [s["prompt"] for s in trainer.sample(max_new_tokens=3)] == list(prompts)


def test_sample_prompt_setting_wins(tmp_path):
    trainer = _trainer(tmp_path, sample_prompt="JULIET:")
    assert trainer.default_prompts() == ("JULIET:",)


def test_a_presets_built_in_corpus_keeps_its_prompts(tmp_path):
    from alphagrad.train.presets import BUILTIN_RECIPE, PRESETS

    trainer = _trainer(tmp_path, preset="char-tiny")
    (tmp_path / "data" / BUILTIN_RECIPE).write_text("{}")
    assert trainer.default_prompts() == PRESETS["char-tiny"].prompts
