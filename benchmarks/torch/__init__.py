"""PyTorch restatements of the reference trainings, one module per task
(``modular``, ``mnist``, ``qm9``, ``imdb``; shared pieces in ``common``)."""
