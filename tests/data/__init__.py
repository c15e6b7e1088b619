"""Tests of data preparation, datasets and loaders."""
