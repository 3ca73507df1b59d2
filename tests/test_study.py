"""The study runner's pieces: the evaluation grid (and its resume), the paper's tables, preset checks."""

import json
import re
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from utils import study as S
from utils.plots.study import plot_recovery_bars
from utils.study import (
    FULL,
    StudySettings,
    check_fits,
    evaluate_grid,
    kept_summary,
    knowledge_kept,
    main,
    recovery_table,
)
from utils.validation import UQError

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads only cost (see conftest.py)


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=2, vocab_size=64, max_position_embeddings=32)
    return LlamaForCausalLM(cfg).eval()


def _world():
    data = SimpleNamespace(raw={"retain": ["a b c", "d e f"]})
    return SimpleNamespace(tokenizer=None, data=data, shots=0)


class CountingEvaluate:
    """Stands in for utils.metrics.evaluate_model: a metric that depends on the weights, and a call count."""

    def __init__(self):
        self.calls = 0

    def __call__(self, model, tokenizer, data, **kwargs):
        self.calls += 1
        w = model.model.layers[0].mlp.down_proj.weight
        return {"knowmem_forget_acc": float(w.detach().abs().mean()), "knowmem_retain_acc": 0.5}


def test_evaluate_grid_rows_and_resume(tmp_path):
    models = {"target": _tiny_model(0), "GA": _tiny_model(1)}
    ev = CountingEvaluate()
    df = evaluate_grid(_world(), models, ("rtn8", "rtn4"), stage_dir=tmp_path, evaluate=ev, progress=False)
    assert len(df) == 6 and ev.calls == 6
    assert set(df["precision"]) == {FULL, "rtn8", "rtn4"}
    # quantization changed the weights, so the weight-dependent metric differs from full precision
    t = df.set_index(["model", "precision"])["knowmem_forget_acc"]
    assert t[("target", "rtn4")] != t[("target", FULL)]
    # every cell was written through a temporary name; none is left behind
    assert len(list(tmp_path.glob("eval__*.json"))) == 6 and not list(tmp_path.glob("*.tmp"))
    # resume: an interrupted run (one stage lost) recomputes only that stage
    (lost,) = tmp_path.glob("eval__GA__rtn4__*.json")
    lost.unlink()
    df2 = evaluate_grid(_world(), models, ("rtn8", "rtn4"), stage_dir=tmp_path, evaluate=ev, progress=False)
    assert ev.calls == 7
    pd.testing.assert_frame_equal(df.sort_values(["model", "precision"]).reset_index(drop=True),
                                  df2.sort_values(["model", "precision"]).reset_index(drop=True))


def test_evaluate_grid_never_reads_a_cell_made_with_other_settings(tmp_path):
    models = {"target": _tiny_model(0)}
    ev = CountingEvaluate()

    def grid(**kwargs):
        kwargs = {"models": models, "quantizers": ("rtn4",), **kwargs}
        df = evaluate_grid(_world(), kwargs.pop("models"), kwargs.pop("quantizers"), stage_dir=tmp_path, evaluate=ev,
                           progress=False, **kwargs)
        assert len(list(tmp_path.glob("eval__*.json"))) == 2, "one stage per cell: the current settings' one"
        return df

    # a stage of an older version (no key in its name) is not read, and is replaced
    (tmp_path / "eval__target__full.json").write_text(json.dumps({"model": "target", "precision": FULL, "knowmem_forget_acc": -1.0}))
    first = grid()
    assert ev.calls == 2 and (first["knowmem_forget_acc"] >= 0).all()
    grid()
    assert ev.calls == 2  # equal settings: resumed
    # other weights under the same name (no stage_keys: the key hashes the weights)
    grid(models={"target": _tiny_model(1)})
    assert ev.calls == 4
    # the same model under other evaluation options, or another identity given by the caller
    grid(oracle_auc=0.5)
    grid(stage_keys={"target": "run-b"})
    assert ev.calls == 8
    grid(stage_keys={"target": "run-b"})
    assert ev.calls == 8
    # a quantizer of the same name with another definition recomputes only its cells
    from utils import quantization as Q

    try:
        Q.register_quantizer(Q.rtn_spec(4, group_size=32, name="rtn4"))
        again = grid(stage_keys={"target": "run-b"})
    finally:
        Q.register_quantizer(Q.rtn_spec(4))
    assert ev.calls == 9
    assert again.iloc[0].equals(first.iloc[0]) and not again.iloc[1].equals(first.iloc[1])


def test_evaluate_grid_leaves_models_untouched():
    model = _tiny_model(0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    evaluate_grid(_world(), {"target": model}, ("rtn4",), evaluate=CountingEvaluate(), progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def _results():
    rows = []
    for model, full, q4 in (("target", 1.0, 1.0), ("GA_GDR", 0.2, 0.9), ("NPO_KLR", 0.4, 0.7)):
        rows.append({"model": model, "precision": FULL, "knowmem_forget_acc": full, "knowmem_retain_acc": 1.0})
        rows.append({"model": model, "precision": "rtn4", "knowmem_forget_acc": q4, "knowmem_retain_acc": 1.0})
    return pd.DataFrame(rows)


def test_recovery_table_and_knowledge_kept():
    table = recovery_table(_results())
    assert list(table.columns) == [FULL, "rtn4"] and list(table.index) == ["target", "GA_GDR", "NPO_KLR"]
    kept = knowledge_kept(_results())
    assert kept.loc["GA_GDR", FULL] == pytest.approx(0.2) and kept.loc["NPO_KLR", "rtn4"] == pytest.approx(0.7)
    summary = kept_summary(_results(), methods=("GA_GDR", "NPO_KLR"))
    assert summary.loc["full precision", "this run"] == pytest.approx(0.3)
    assert summary.loc["4-bit", "this run"] == pytest.approx(0.8)
    assert summary.loc["4-bit", "paper (Table 1, MUSE)"] == pytest.approx(0.83)


def test_tables_reject_unknown_names():
    with pytest.raises(ValueError, match="metric="):
        recovery_table(_results(), "nope")
    with pytest.raises(ValueError, match="target="):
        knowledge_kept(_results(), target="base")
    with pytest.raises(ValueError, match="methods="):
        kept_summary(_results(), methods=("GA",))


def test_plot_recovery_bars():
    fig = plot_recovery_bars(_results())
    assert len(fig.axes) == 2 and "forget" in fig.axes[0].get_ylabel()
    with pytest.raises(ValueError, match="columns"):
        plot_recovery_bars(_results().drop(columns="precision"))


def test_check_fits_stops_before_a_run_that_needs_a_gpu():
    assert "CPU" in check_fits("tiny", torch.device("cpu"))
    with pytest.raises(ValueError, match=r"UQ_MODEL='muse-news-7b'.*GiB.*'tiny'"):
        check_fits("muse-news-7b", torch.device("cpu"))


@pytest.mark.parametrize(
    "kwargs, name",
    [({"methods": ("GAX",)}, "method"), ({"quantizers": ("rtn3x",)}, "quantizer"), ({"data": "wiki"}, "UQ_DATA"),
     ({"seed": -1}, "UQ_SEED"), ({"steps": 0}, "steps"), ({"lr": 0.0}, "lr")],
)
def test_settings_validate(kwargs, name):
    with pytest.raises(ValueError, match=name):
        StudySettings(**kwargs)


def test_main_reports_bad_input_without_a_traceback(capsys, tmp_path):
    out = tmp_path / "x"
    assert main(["--model", "muse-news-7b", "--data", "news", "--device", "cpu", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: UQ_MODEL='muse-news-7b' needs a GPU") and "Traceback" not in err
    assert not out.exists()


def _no_work(*args, **kwargs):
    raise AssertionError("the run started working on an input it should have refused")


@pytest.mark.parametrize("where", ["/proc/uq-study", "/sys/uq-study", "FILE", "FILE/sub/folder"])
@pytest.mark.parametrize("parameter", ["--out", "--cache-dir", "UQ_CACHE"])
def test_an_unusable_path_is_one_error_before_any_work(parameter, where, tmp_path, monkeypatch, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    path = where.replace("FILE", str(a_file))
    out = tmp_path / "out"
    monkeypatch.delenv("UQ_CACHE", raising=False)
    monkeypatch.setattr(S, "build_world", _no_work)
    argv = ["--out", path if parameter == "--out" else str(out), "--no-progress"]
    if parameter == "--cache-dir":
        argv += ["--cache-dir", path]
    if parameter == "UQ_CACHE":
        monkeypatch.setenv("UQ_CACHE", path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {parameter}={path!r} is not accepted: ") and err.count("\n") == 1, err
    assert "accepted values: a folder" in err and ("/proc" in err or "/sys" in err or "a file, not a folder" in err)
    assert not out.exists() and a_file.read_text() == "not a folder"
    assert not list(tmp_path.rglob("settings.json"))


@pytest.mark.parametrize("field", ["out", "cache_dir"])
def test_settings_refuse_an_unusable_folder(field, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for path in ("/proc/uq", a_file, a_file / "sub"):
        with pytest.raises(UQError, match=rf"^{field}={re.escape(repr(str(path)))} is not accepted: "):
            StudySettings(**{field: path})
    assert a_file.is_file() and not (a_file.parent / "sub").exists()


def test_command_line_seed_errors_name_the_flag(capsys, monkeypatch):
    monkeypatch.setattr(S, "build_world", _no_work)
    assert main(["--seed", "1.5", "--out", "/nonexistent-uq-out"]) == 2
    assert capsys.readouterr().err == "error: --seed='1.5' is not accepted; accepted values: a non-negative integer such as 0, 1, 2\n"
    monkeypatch.setenv("UQ_SEED", "abc")
    assert main(["--out", "/nonexistent-uq-out"]) == 2
    assert capsys.readouterr().err.startswith("error: UQ_SEED='abc' is not accepted")


# --------------------------------------------------------------------------------------------------
# run_study on a tiny random world: build_world and evaluate_model replaced, the real unlearning (a few
# steps of a 2-layer, 64-wide Llama) and the real stages, settings and results files
# --------------------------------------------------------------------------------------------------
def _small_corpus():
    from utils.data import MuseData, load_muse_mini

    mini = load_muse_mini()
    return MuseData(name="mini", raw={k: v[:3] for k, v in mini.raw.items()}, verbmem=mini.verbmem[:2],
                    knowmem={k: v[:4] for k, v in mini.knowmem.items()}, privleak={k: v[:3] for k, v in mini.privleak.items()},
                    icl=mini.icl, meta=mini.meta)


class StudyBench:
    """Counts the evaluations run_study makes; its worlds depend on the seed as real ones do."""

    def __init__(self):
        from conftest import tiny_model

        from utils.models import build_word_tokenizer, corpus_texts

        self.tiny_model = tiny_model
        self.data = _small_corpus()
        self.tokenizer = build_word_tokenizer(corpus_texts(self.data))
        self.evaluated: list[tuple] = []
        self.worlds = 0

    def build_world(self, model, data_name, *, seed, cache_dir, device, progress=True, finetune_steps=300):
        self.worlds += 1
        vocab = len(self.tokenizer)
        return S.StudyWorld(self.tiny_model(seed, vocab=vocab, hidden=64), self.tiny_model(1000 + seed, vocab=vocab, hidden=64),
                            self.tokenizer, self.data, name=model)

    def evaluate_model(self, model, tokenizer, data, *, include=("knowmem",), **kwargs):
        w = model.model.layers[0].mlp.down_proj.weight.detach().float()
        self.evaluated.append(tuple(include))
        return {"knowmem_forget_acc": float(w.abs().mean()), "knowmem_retain_acc": float(w.pow(2).mean()),
                "privleak_auc": 0.5, "privleak": float(kwargs.get("oracle_auc") or 0.0)}


@pytest.fixture
def bench(monkeypatch, tmp_path):
    import utils.metrics

    b = StudyBench()
    monkeypatch.setattr(S, "build_world", b.build_world)
    monkeypatch.setattr(utils.metrics, "evaluate_model", b.evaluate_model)
    b.cache = tmp_path / "cache"
    return b


def _settings(bench, out, **changes):
    fields = dict(model="tiny", data="mini", seed=0, device="cpu", out=out, methods=("NPO_GDR",), quantizers=("rtn4",),
                  steps=1, lr=1e-2, cache_dir=bench.cache, progress=False)
    fields.update(changes)
    return StudySettings(**fields)


def _rows(results, model):
    return results[results["model"] == model].sort_values("precision").reset_index(drop=True)


def test_a_second_run_with_other_settings_recomputes_and_never_reuses_a_stage(bench, tmp_path):
    out = tmp_path / "out"
    first = S.run_study(_settings(bench, out), log=lambda _: None)
    assert len(bench.evaluated) == 5  # the oracle's PrivLeak, then target and NPO_GDR x (full, rtn4)
    # the same folder, other unlearning steps: NPO_GDR is unlearned and evaluated again, the target is not
    bench.evaluated.clear()
    second = S.run_study(_settings(bench, out, steps=3), log=lambda _: None)
    assert len(bench.evaluated) == 2
    assert not _rows(second, "NPO_GDR").equals(_rows(first, "NPO_GDR"))
    pd.testing.assert_frame_equal(_rows(second, "target"), _rows(first, "target"))
    # ... exactly what a fresh folder gives for the second settings, which settings.json and results.csv describe
    fresh = S.run_study(_settings(bench, tmp_path / "fresh", steps=3), log=lambda _: None)
    pd.testing.assert_frame_equal(second, fresh)
    assert json.loads((out / "settings.json").read_text())["steps"] == 3
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), pd.read_csv(tmp_path / "fresh" / "results.csv"))
    # equal settings resume: nothing is evaluated again
    bench.evaluated.clear()
    S.run_study(_settings(bench, out, steps=3), log=lambda _: None)
    assert bench.evaluated == []
    # another learning rate: NPO_GDR again; then another quantizer definition under the same name: its cells again
    S.run_study(_settings(bench, out, steps=3, lr=5e-3), log=lambda _: None)
    assert len(bench.evaluated) == 2
    from utils import quantization as Q

    bench.evaluated.clear()
    try:
        Q.register_quantizer(Q.rtn_spec(4, group_size=32, name="rtn4"))
        S.run_study(_settings(bench, out, steps=3, lr=5e-3), log=lambda _: None)
    finally:
        Q.register_quantizer(Q.rtn_spec(4))
    assert len(bench.evaluated) == 2  # the rtn4 cells of target and NPO_GDR; full precision is reused
    # another seed is another world: everything, the oracle's stage included, is recomputed
    bench.evaluated.clear()
    S.run_study(_settings(bench, out, steps=3, lr=5e-3, seed=1), log=lambda _: None)
    assert len(bench.evaluated) == 5 and bench.evaluated[0] == ("privleak",)
    # stages/ holds one file per cell, those of the last settings
    names = sorted(p.name.rsplit("__", 1)[0] for p in (out / "stages").iterdir())
    assert names == ["eval__NPO_GDR__full", "eval__NPO_GDR__rtn4", "eval__target__full", "eval__target__rtn4", "oracle_auc"]


def test_a_run_that_fails_leaves_no_half_made_output_folder(bench, tmp_path, monkeypatch, capsys):
    import utils.metrics
    import utils.unlearning

    out = tmp_path / "new" / "out"

    def no_world(*args, **kwargs):
        raise UQError("UQ_MODEL='x' is not accepted: a stand-in for a model that cannot be loaded")

    with monkeypatch.context() as m:
        m.setattr(S, "build_world", no_world)
        assert main(["--out", str(out), "--no-progress", "--device", "cpu", "--cache-dir", str(bench.cache)]) == 2
    assert "stand-in" in capsys.readouterr().err and not (tmp_path / "new").exists()

    def broken(*args, **kwargs):
        raise RuntimeError("interrupted")

    # fails before any stage is written: the folders it created are removed
    with monkeypatch.context() as m:
        m.setattr(utils.metrics, "evaluate_model", broken)
        with pytest.raises(RuntimeError, match="interrupted"):
            S.run_study(_settings(bench, out), log=lambda _: None)
    assert not (tmp_path / "new").exists()
    # fails after the oracle's stage: the folder is kept, and the next run resumes from it
    with monkeypatch.context() as m:
        m.setattr(utils.unlearning, "unlearn_cached_result", broken)
        with pytest.raises(RuntimeError, match="interrupted"):
            S.run_study(_settings(bench, out), log=lambda _: None)
    assert [p.name.split("__")[0] for p in (out / "stages").iterdir()] == ["oracle_auc"]
    bench.evaluated.clear()
    S.run_study(_settings(bench, out), log=lambda _: None)
    assert len(bench.evaluated) == 4 and ("privleak",) not in bench.evaluated and (out / "results.csv").is_file()
    # a folder that existed before is never removed
    existing = tmp_path / "existing"
    existing.mkdir()
    with monkeypatch.context() as m:
        m.setattr(utils.metrics, "evaluate_model", broken)
        with pytest.raises(RuntimeError):
            S.run_study(_settings(bench, existing), log=lambda _: None)
    assert existing.is_dir()


@pytest.fixture
def quick_awq():
    """``awq4_quick``: AWQ with a 2-point grid instead of 20 (the same code path, ~10x faster)."""
    from utils import quantization as Q

    spec = Q.register_quantizer(Q.QuantSpec("awq4_quick", method="awq", bits=4, scheme="minmax", group_size=64,
                                            needs_calibration=True, options={"n_grid": 2}))
    yield spec.name
    Q.QUANTIZERS.pop(spec.name, None)


def test_no_progress_hides_every_bar_gptq_awq_and_the_libraries_included(bench, tmp_path, capfd, quick_awq):
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()
    settings = _settings(bench, tmp_path / "out", quantizers=("gptq4", quick_awq))
    S.run_study(settings, log=lambda _: None)  # unlearns and saves NPO_GDR (transformers' "Writing model shards")
    S.run_study(settings, log=lambda _: None)  # resumes: loads NPO_GDR back from the cache (transformers' "Loading weights")
    err = capfd.readouterr().err
    assert "%|" not in err and "GPTQ" not in err and "AWQ" not in err and "shards" not in err, err
    assert hf_logging.is_progress_bar_enabled()  # restored after the run
    # the same quantizers with progress on show GPTQ's and AWQ's bars (what was hidden above)
    world = bench.build_world("tiny", "mini", seed=0, cache_dir=None, device="cpu")
    S.evaluate_grid(world, {"target": world.target}, ("gptq4", quick_awq), evaluate=bench.evaluate_model, progress=True)
    err = capfd.readouterr().err
    assert "GPTQ" in err and "AWQ" in err
