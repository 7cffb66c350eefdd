"""Test support for storyboard: the provider emulator (``storyboard.testing.emulator``)."""
