"""IMDb sentiment with a large-initialization LSTM (Grokfast paper, Sec. 4).

An Embedding -> 2-layer LSTM -> Linear classifier whose initial parameters are
scaled by 6 is trained with binary cross-entropy, gradient clipping and AdamW
on 750 of the first 1,000 reviews of the IMDb CSV and validated on the other
250. Grokfast-EMA (alpha 0.98, lamb 2.0, weight decay 10.0) is compared with
the baseline (weight decay 1.0) and with weight decay 10.0 alone.

Modules: `config`, `data` (CSV, the reference's tokenization;
``stopwords-en.txt`` is NLTK's English list), `model`, `training` (the pure
update, epoch and evaluation) and `task` (the harness `TASK`).
"""
