"""``python -m storyboard``: the same as the ``storyboard`` command."""

from storyboard.cli import main_entry

if __name__ == "__main__":
    main_entry()
