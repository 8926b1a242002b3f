"""A pretrained-format generator through the whole framework: train with the critics, MLflow, the HF copy,
evaluate and chat from the checkpoint after the original folder is gone, mixed precision."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from tiny import tiny_hf_overrides
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from empdg.config import compose
from empdg.evaluation.pipeline import run_evaluation
from empdg.models.decoding import DecodingConfig
from empdg.serving.chat_session import ChatSession, ChatSettings
from empdg.serving.registry import register_run_folder
from empdg.training.checkpoint import load_checkpoint
from empdg.training.run import run_training

SHORT = [
    "training.phases.generator_pretrain=3",
    "training.phases.critic_pretrain=2",
    "training.phases.adversarial=1",
    "adversarial.g_steps=1",
    "adversarial.report_batches=1",
    "trainer.val_check_interval=3",
    "training.sample_generations=0",
]


@pytest.mark.slow
def test_a_fine_tuned_seq2seq_trains_saves_evaluates_and_chats(tiny_pretrained, compose_train, tmp_path) -> None:
    original = shutil.copytree(tiny_pretrained["seq2seq"], tmp_path / "bart-tiny")
    overrides = [*tiny_hf_overrides(original), "model=hf_seq2seq", "model.emotion_encoder=true", "logger=mlflow"]
    cfg = compose_train(*overrides, *SHORT, tiny=False)
    metrics = run_training(cfg)
    run = Path(cfg.paths.output_dir)

    # perplexity per subword token, under its own name; the checkpoint monitors it
    assert "val/subword_ppl" in metrics and "val/ppl" not in metrics and "wgan/critic/sem_gold_beats_greedy" in metrics
    assert list((run / "checkpoints").glob("best-*.ckpt"))
    # the Hugging Face copy, loadable with transformers alone, and in MLflow
    hf = run / "hf_model"
    assert AutoModelForSeq2SeqLM.from_pretrained(hf) is not None and AutoTokenizer.from_pretrained(hf) is not None
    assert (hf / "empdg_heads.safetensors").is_file()
    record = json.loads((run / "mlflow_run.json").read_text())
    client = MlflowClient(tracking_uri=record["tracking_uri"])
    logged = {Path(a.path).name for a in client.list_artifacts(record["run_id"], "hf_model")}
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= logged

    shutil.rmtree(original)  # evaluation and chat rebuild the model from the run's own copy
    checkpoint = run / "checkpoints" / "last.ckpt"
    evaluation = compose("evaluate", [f"ckpt_path={checkpoint}", f"paths.root_dir={tmp_path}", "logger=none",
                                      f"paths.output_dir={tmp_path / 'eval'}", "evaluate.meaning=false"])  # fmt: skip
    scores = run_evaluation(evaluation)
    assert math.isfinite(scores["subword_ppl"]) and "ppl" not in scores and scores["n_examples"] > 0
    row = json.loads((tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()[0])
    assert {"subword_nll_sum", "subword_n_tokens"} <= set(row) and not {"nll_sum", "n_tokens"} & set(row)

    loaded = load_checkpoint(checkpoint)
    chat = compose("chat", ["ckpt_path=unused"])
    settings = ChatSettings.from_config(chat.chat, (loaded.run_config or {}).get("data"), chat.data)
    session = ChatSession(loaded.bundle, DecodingConfig(strategy="sample", max_len=6, min_len=2, seed=0), settings)
    turn = session.respond("i finally got the job i wanted , i am so happy !")
    assert turn.reply and turn.emotions
    (hope,), (the,) = loaded.bundle.vocab.pieces("hope"), loaded.bundle.vocab.pieces("the")  # one piece each
    emotion_weight = loaded.bundle.critics.ids_view(torch.tensor([[hope, the]])).emotion_weight  # what D_emo reads
    assert emotion_weight.tolist() == [[1.0, 0.0]]

    # registered as an MLflow model: served from the run's Hugging Face copy, with the HF stack as requirements
    registration = register_run_folder(run, "tiny-bart")
    staged = Path(mlflow.artifacts.download_artifacts(f"runs:/{registration.run_id}/model",
                                                      tracking_uri=record["tracking_uri"]))  # fmt: skip
    assert any(staged.rglob("hf_model/model.safetensors"))
    assert "transformers" in (staged / "requirements.txt").read_text()
    model = mlflow.pyfunc.load_model(str(staged))
    (answer,) = model.predict(pd.DataFrame([{"history": ["my dog died yesterday ."]}]))
    assert answer["reply"] or answer["fallback"]


@pytest.mark.slow
def test_causal_with_lora_trains_in_bf16_mixed_precision(tiny_pretrained, compose_train) -> None:
    overrides = [*tiny_hf_overrides(tiny_pretrained["causal"]), "model.lora_rank=2", "model.emotion_encoder=true",
                 "logger=none", "trainer.precision=bf16-mixed", "model.gradient_checkpointing=true"]  # fmt: skip
    cfg = compose_train(*overrides, *SHORT, tiny=False)
    metrics = run_training(cfg)
    assert math.isfinite(metrics["val/subword_ppl"]) and math.isfinite(metrics["val/loss"])
