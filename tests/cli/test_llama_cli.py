"""The command line with a Llama: train --set model=llama, sample, eval, export --format hf
(read back by transformers), import-hf and sample from a Hugging Face folder."""

from __future__ import annotations

import numpy as np
import pytest
from cli_support import corpus_text, run_cli, sets

from alphagrad.nn import Llama, LlamaConfig
from alphagrad.tokenizers import load
from alphagrad.train.sampling import load_model

LLAMA = ("model=llama", "n_kv_head=1", "max_iters=4", "eval_interval=4")


@pytest.fixture(scope="module")
def llama_run(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    result = run_cli("train", "--data", data_dir, "--out", root / "llama", "--runs-root", root,
                     *sets(*LLAMA))
    assert "(llama, 1 layers x 16)" in result.stdout
    return root / "llama"


def test_sample_eval_and_hf_round_trip(llama_run, data_dir, tmp_path):
    first = run_cli("sample", llama_run, "--prompt", "alpha", "--max-new-tokens", "8",
                    "--seed", "3").stdout
    assert first.startswith("alpha") and len(first) > len("alpha\n")
    assert "perplexity" in run_cli("eval", llama_run, "--data", data_dir, "--batches", "2").stdout
    folder = tmp_path / "hf"
    assert "Hugging Face Llama folder" in run_cli("export", llama_run, "--format", "hf", "-o",
                                                  folder).stdout
    run_cli("import-hf", folder, "-o", tmp_path / "back.ckpt")
    model, _, _ = load_model(llama_run / "checkpoints" / "best.ckpt")
    back, _, _ = load_model(tmp_path / "back.ckpt")
    assert isinstance(back, Llama)
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(array, back.state_dict()[name], err_msg=name)
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    reference = transformers.LlamaForCausalLM.from_pretrained(folder).eval()
    idx = np.random.default_rng(0).integers(0, model.config.vocab_size, (2, 16))
    with torch.no_grad():
        want = reference(torch.tensor(idx)).logits.numpy()
    np.testing.assert_allclose(model(idx, all_logits=True)[0].data, want, atol=1e-5, rtol=1e-4)


def test_sample_and_train_from_a_hugging_face_folder(llama_run, data_dir, tmp_path):
    folder = tmp_path / "hf"
    run_cli("export", llama_run, "--format", "hf", "-o", folder)
    # no tokenizer.json for a character tokenizer: the folder's model loads, text cannot
    result = run_cli("sample", folder, "--prompt", "alpha", expect=2)
    assert "no tokenizer" in result.stderr
    result = run_cli("train", "--init-from", folder, "--data", data_dir, "--out",
                     tmp_path / "ft", *sets("max_iters=2", "eval_interval=2", "model=gpt"))
    assert "(llama, 1 layers x 16)" in result.stdout
    result = run_cli("train", "--init-from", folder, "--data", data_dir, "--out",
                     tmp_path / "ft2", *sets("block_size=64"), expect=2)
    assert "block_size 64 is longer than the model's context 16" in result.stderr


def test_a_llama_2_style_folder_samples_prepares_fine_tunes_and_exports(
        tmp_path, sentencepiece_of):
    text = corpus_text()
    tok = sentencepiece_of(text, bos_token="<s>")
    assert tok.encode("alpha beta") == [tok.vocab["▁alpha"], tok.vocab["▁beta"]]
    folder = tmp_path / "hf"
    Llama(LlamaConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2,
                      n_kv_head=1, n_embd=16, intermediate_size=32)).save_pretrained(folder)
    tok.save_pretrained(folder)
    out = run_cli("sample", folder, "--prompt", "alpha beta", "--max-new-tokens", "6",
                  "--seed", "1").stdout
    assert out.startswith("alpha beta") and len(out) > len("alpha beta\n")
    (tmp_path / "corpus.txt").write_text(text)
    run_cli("prepare", tmp_path / "corpus.txt", "--tokenizer", folder / "tokenizer.json", "-o",
            tmp_path / "data")
    ids = np.fromfile(tmp_path / "data" / "train.bin", np.uint16)
    assert tok.decode(ids[-200:].tolist()).replace("</s>", "") in text  # </s> ends documents
    result = run_cli("train", "--init-from", folder, "--data", tmp_path / "data", "--out",
                     tmp_path / "ft", *sets("max_iters=2", "eval_interval=2", "block_size=32"))
    assert "(llama, 1 layers x 16)" in result.stdout
    run_cli("export", tmp_path / "ft", "--format", "hf", "-o", tmp_path / "back")
    assert load(tmp_path / "back" / "tokenizer.json") == tok
