"""Helpers for driving the curator app with Textual's pilot, shared by the tests and the
screenshot script: wait for the app's workers, type query words."""

from __future__ import annotations

from textual.pilot import Pilot

# Longer than the browse screen's debounce, so the typed words have been counted and loaded.
AFTER_TYPING_SECONDS = 0.45


async def settle(pilot: Pilot) -> None:
    """Wait for pending messages, every running worker, and the repaint that follows them."""
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def type_text(pilot: Pilot, text: str) -> None:
    """Press the keys that type ``text`` into the focused widget."""
    await pilot.press(*("space" if character == " " else character for character in text))


async def type_query(pilot: Pilot, text: str) -> None:
    """Replace the browse screen's query words by typing and wait until the table follows."""
    await pilot.press("slash")
    pilot.app.screen.query_one("#query").value = ""
    await type_text(pilot, text)
    await pilot.pause(AFTER_TYPING_SECONDS)
    await settle(pilot)
