"""Reporting: leaderboards, comparisons and verdicts, statistics and plots, generated from the store."""
