"""The dispatch engine: claims, scaler and warm pool, status tracker and reconciler."""
