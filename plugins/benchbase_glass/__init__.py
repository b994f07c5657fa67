"""benchbase's built-in glass plugin: Kob-Andersen data, simulator, BOTAN-style models."""
