"""Training stage: point-in-time training sets, LightGBM models, MLflow registry and the gate."""
