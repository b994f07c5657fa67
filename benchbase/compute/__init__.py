"""The computing layer: the code that can change a run's numbers (training, splits, batching,
rebalancing, metrics, protocols, data loading). The harness fingerprint covers it."""
