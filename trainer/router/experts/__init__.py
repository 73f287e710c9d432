"""The router's experts: QLoRA adapters on one shared base LM, plus a larger generalist.

* :mod:`~trainer.router.experts.train` — pretrain the tiny bases here, train the adapters;
* :mod:`~trainer.router.experts.pool` — load the bases (NF4) once, switch adapters per request,
  generate, and cost each answer.
"""
