"""The curator terminal UI, built with Textual; ``curator tui`` starts it (see ``tui.app``)."""
