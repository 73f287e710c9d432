"""The on-device VLM: questions and answers, backends (llama.cpp, OpenAI-compatible HTTP) and a
worker thread that keeps them off the control loop. Torch-free; see docs/vlm.md.

- :mod:`edge.vlm.questions` — the hazard questions, answer normalisation, the gate rule,
- :mod:`edge.vlm.backend` — :class:`~edge.vlm.backend.LlamaCppBackend`,
  :class:`~edge.vlm.backend.OpenAIHTTPBackend`, :func:`~edge.vlm.backend.make_backend`,
- :mod:`edge.vlm.worker` — :class:`~edge.vlm.worker.VLMWorker` (timeout, bounded queue).
"""
