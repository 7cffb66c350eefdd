"""Tests of the provider emulator (storyboard.testing.emulator), one file per room."""
