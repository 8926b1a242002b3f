"""A trained checkpoint as an MLflow pyfunc model: a dialogue history in, a reply and the user's emotion out.

The model folder carries everything it needs (``artifacts/run``): the checkpoint reduced to its weights and
hyper-parameters (loaded with ``torch.load(weights_only=True)``, so a model from elsewhere runs no pickled code),
the run's ``config.yaml`` and ``vocab.json``, and ``serving.json`` (the chat settings and the default decoding
fixed when it was registered). Each request is answered by the terminal chat's own session
(:class:`~empdg.serving.chat_session.ChatSession`), restarted on the request's history: the same encoding,
decoding, emotion prediction and degenerate-reply fallback as ``empdg-chat``.

A REST request to ``mlflow models serve`` (one record per dialogue; ``params`` optional, for all records)::

    {"dataframe_records": [{"history": ["i lost my job today ."]}],   # utterances, the speaker (user) first,
                                                                      # alternating, ending with the speaker's
     "params": {"strategy": "beam", "beam_size": 4, "max_len": 20}}   # decoding settings (PARAM_TYPES)

One answer: ``{"reply": str, "emotion": str, "top_emotions": [{"emotion": str, "probability": float}] * 3,
"fallback": bool}`` (``fallback``: every candidate was degenerate and the editorial fallback answered).
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types.schema import Array, ColSpec, DataType, ParamSchema, ParamSpec, Schema

#: the folder artifact the model is logged with (``artifacts={ARTIFACT: folder}``)
ARTIFACT = "run"
CHECKPOINT_FILE = "checkpoints/model.ckpt"
SERVING_FILE = "serving.json"

#: the decoding settings a request may change (MLflow inference ``params``), with their MLflow types; the rest
#: of DecodingConfig stays as registered. ``seed`` seeds sampling, ``rerank`` is the chat's ``chat.rerank``.
PARAM_TYPES = {
    "strategy": "string",
    "max_len": "long",
    "min_len": "long",
    "beam_size": "long",
    "no_repeat_ngram_size": "long",
    "top_k": "long",
    "length_penalty": "double",
    "top_p": "double",
    "temperature": "double",
    "seed": "long",
    "rerank": "long",
}

INPUT_EXAMPLE = [{"history": ["i just got a new puppy and i am so happy !"]}]


def input_schema() -> Schema:
    """One column, ``history``: the scoring server refuses requests without it."""
    return Schema([ColSpec(Array(DataType.string), "history")])


def params_schema(decoding: Mapping[str, Any], chat: Mapping[str, Any]) -> ParamSchema:
    """The optional decoding settings of a request, their defaults those the model was registered with.

    They are MLflow inference params (``{"dataframe_records": [...], "params": {"strategy": "beam"}}``, or
    ``model.predict(data, params={...})``), not DataFrame columns: a column that some requests leave out turns
    integers into floats with NaN, which MLflow's schema refuses.
    """
    defaults = {**dict(decoding), "seed": chat["seed"], "rerank": chat["rerank"]}
    cast = {"string": str, "long": int, "double": float}
    return ParamSchema([ParamSpec(name, kind, cast[kind](defaults[name])) for name, kind in PARAM_TYPES.items()])


def _bad_request(message: str) -> MlflowException:
    # INVALID_PARAMETER_VALUE: the scoring server answers 400 with this message, not 500
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def _records(model_input: Any) -> list[dict[str, Any]]:
    """A DataFrame, a list of request dicts, or one dict -> a list of request dicts."""
    if hasattr(model_input, "to_dict"):  # pandas DataFrame (what the scoring server and pyfunc pass)
        return [dict(row) for row in model_input.to_dict(orient="records")]
    if isinstance(model_input, Mapping):
        return [dict(model_input)]
    if isinstance(model_input, Sequence) and not isinstance(model_input, str):
        return [dict(row) for row in model_input]
    raise _bad_request("expected a DataFrame or a list of requests, each with a 'history' list of utterances")


def _history(request: Mapping[str, Any]) -> list[str]:
    history = request.get("history")
    if hasattr(history, "tolist"):  # a numpy array after schema enforcement
        history = history.tolist()
    if isinstance(history, str) or not isinstance(history, Sequence) or not history:
        raise _bad_request("'history' must be a non-empty list of utterances (the speaker's first)")
    history = [str(u) for u in history]
    if len(history) % 2 == 0:
        raise _bad_request(
            f"'history' has {len(history)} utterances: it must alternate speaker, listener, ... and end with "
            "the speaker's (user's) utterance, i.e. an odd number of them"
        )
    return history


class EmpDGChatModel(mlflow.pyfunc.PythonModel):
    """The pyfunc: ``load_context`` rebuilds the chat session, ``predict`` answers each request."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        from empdg.data.vocab import Vocab
        from empdg.models.decoding import DecodingConfig
        from empdg.models.inference import inference_device
        from empdg.serving.chat_session import ChatSession, ChatSettings
        from empdg.training.checkpoint import load_checkpoint

        folder = Path(context.artifacts[ARTIFACT])
        loaded = load_checkpoint(folder / CHECKPOINT_FILE)  # weights_only=True
        packed = Vocab.load(folder / "vocab.json")
        if packed.fingerprint() != loaded.bundle.vocab.fingerprint():
            raise ValueError("the packed vocab.json is not the checkpoint's vocabulary (model folder edited?)")
        serving = json.loads((folder / SERVING_FILE).read_text(encoding="utf-8"))
        self.decoding = DecodingConfig.from_mapping(serving["decoding"])
        self.settings = ChatSettings(**serving["chat"])
        # the GPU when the serving machine has one (CUDA_VISIBLE_DEVICES= keeps it on the CPU)
        self.session = ChatSession(loaded.bundle.to(inference_device("auto")), self.decoding, self.settings)
        self.lock = threading.Lock()  # one session: requests served concurrently take turns

    def _decoding(self, params: Mapping[str, Any] | None) -> tuple[Any, int, int]:
        """This request's DecodingConfig, sampling seed and rerank count (the registered ones where not given)."""
        from empdg.models.decoding import DecodingConfig

        changes = {k: v for k, v in (params or {}).items() if k in PARAM_TYPES and v is not None}
        unknown = sorted(set(params or {}) - set(PARAM_TYPES))
        if unknown:
            raise _bad_request(f"unknown params {unknown}; the model takes {sorted(PARAM_TYPES)}")
        seed = int(changes.pop("seed", self.settings.seed))
        rerank = int(changes.pop("rerank", self.settings.rerank))
        if rerank < 0:
            raise _bad_request("'rerank' must be >= 0")
        try:
            decoding = DecodingConfig(**{**dataclasses.asdict(self.decoding), **changes})
        except (TypeError, ValueError) as error:
            raise _bad_request(str(error)) from None
        return decoding, seed, rerank

    def answer(self, request: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One reply to one request (a fresh conversation with the request's history)."""
        import torch

        from empdg.data.examples import LISTENER, SPEAKER

        history = _history(request)
        decoding, seed, rerank = self._decoding(params)
        session = self.session
        with self.lock:
            session.reset()
            session.decoding = decoding
            session.settings = dataclasses.replace(self.settings, rerank=rerank)
            session.random = torch.Generator().manual_seed(seed)
            for i, utterance in enumerate(history[:-1]):
                session.history.append(session.tokenize(utterance) or ["..."])
                session.roles.append(SPEAKER if i % 2 == 0 else LISTENER)
            turn = session.respond(history[-1])  # trims the history to the model's context length
        top = [{"emotion": name, "probability": float(p)} for name, p in turn.emotions]
        return {
            "reply": turn.reply,
            "emotion": top[0]["emotion"] if top else None,
            "top_emotions": top,
            "fallback": turn.fallback_reason is not None,
        }

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """One answer per request (row), in order; ``params``: the decoding settings for all of them.

        ``pd.DataFrame`` is the hint MLflow 3 infers nothing from: the explicit signature the model is logged with
        (``input_schema``, ``params_schema``) stays in charge. A list of request dicts works too.
        """
        return [self.answer(request, params) for request in _records(model_input)]
