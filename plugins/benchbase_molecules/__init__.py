"""benchbase's built-in molecular plugin: QM9, OGB, PCQM4Mv2, featuriser, encoders, pretext tasks."""
