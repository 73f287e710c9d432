"""The expert router: LoRA experts on one base LM, a contextual-bandit router, an OpenAI-style API.

Modules (each does one job; heavy imports stay inside them, none happen here):

* :mod:`~trainer.router.tasks` — seeded code / math / legal / mixed prompts at three levels;
* :mod:`~trainer.router.graders` and :mod:`~trainer.router.sandbox` — grading answers, running
  code against unit tests in a locked-down subprocess;
* :mod:`~trainer.router.outcomes` — the outcome table (``prompt, expert, score, cost`` JSONL);
* :mod:`~trainer.router.embed`, :mod:`~trainer.router.bandit` — prompt embedding and the
  LinUCB router; :mod:`~trainer.router.evaluate` — RouteLLM/RouterBench-style scoring;
* :mod:`~trainer.router.lm`, :mod:`~trainer.router.experts` — the tiny base LM, QLoRA experts;
* :mod:`~trainer.router.serve` — the OpenAI-compatible service; :mod:`~trainer.router.cli` —
  ``sitehawk-train router …``.
"""
