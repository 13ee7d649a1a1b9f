"""IMDb sentiment with a large-initialization LSTM (Grokfast paper, Sec. 4).

An Embedding -> 2-layer LSTM -> Linear classifier whose initial parameters are
scaled by 6 is trained with binary cross-entropy, gradient clipping and AdamW
on 750 of the first 1,000 reviews of the IMDb CSV and validated on the other
250. Grokfast-EMA (alpha 0.98, lamb 2.0, weight decay 10.0) is compared with
the baseline (weight decay 1.0) and with weight decay 10.0 alone.

Modules: `config` (settings, whose fields are the flags, and the paper's
defaults), `data` (CSV reading, the reference's tokenization, stratified
split, vocabulary and encoding; ``stopwords-en.txt`` is the packaged NLTK
English stop-word list), `model` (the LSTM classifier with PyTorch's
equations and init), `training` (the optimizer, loss, per-update function,
epoch and evaluation, all pure), `task` (the harness task behind
``grokfast-jax imdb`` / ``imdb-compare``: data, program, results, figures,
comparison; the harness runs the loop, checkpoints and meshes).
"""
