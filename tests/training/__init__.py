"""Tests of the trainer, its launch configs and entry points."""
