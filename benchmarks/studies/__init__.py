"""Studies that produce the published tables (steps and seconds to grok, the
fastest recipe, the paper's tasks, ETT forecasting)."""
