"""Mammogram previews in the terminal: boxes drawn into the pixels, then shown as half-block
characters (two pixels per cell, upper half in the foreground colour) or, where the terminal has a
graphics protocol, through textual-image.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
from rich.color import Color
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style
from textual.app import ComposeResult
from textual.reactive import reactive
from textual.widget import Widget

from tui.services import PreviewSource

UPPER_HALF_BLOCK = "\u2580"
DETECTOR_COLOUR = (255, 64, 64)
CURATOR_COLOUR = (64, 220, 255)


def fit_size(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """Return the largest (width, height) within the bounds that keeps the aspect ratio, at least 1x1."""
    factor = min(max_width / width, max_height / height)
    return max(1, int(width * factor)), max(1, int(height * factor))


def draw_boxes(gray: np.ndarray, boxes: list[list[float]], colour: tuple[int, int, int], thickness: int = 1,
               rgb: np.ndarray | None = None) -> np.ndarray:
    """Outline ``[x, y, w, h]`` boxes on a grayscale image; return the RGB result.

    Pass ``rgb`` to draw on an image that already carries other boxes.
    """
    canvas = np.repeat(gray[:, :, None], 3, axis=2) if rgb is None else rgb.copy()
    height, width = canvas.shape[:2]
    for box in boxes:
        x, y, w, h = box[:4]
        left = int(np.clip(round(x), 0, width - 1))
        top = int(np.clip(round(y), 0, height - 1))
        right = int(np.clip(round(x + w) - 1, left, width - 1))
        bottom = int(np.clip(round(y + h) - 1, top, height - 1))
        cv2.rectangle(canvas, (left, top), (right, bottom), colour, thickness)
    return canvas


def render_pixels(source: PreviewSource, width: int, height: int, thickness: int = 1) -> np.ndarray:
    """Resize the source to ``width`` x ``height`` and draw its boxes at that size (RGB uint8)."""
    original_height, original_width = source.pixels.shape
    resized = cv2.resize(source.pixels, (width, height), interpolation=cv2.INTER_AREA)
    scale_x, scale_y = width / original_width, height / original_height

    def scaled(boxes: list[list[float]]) -> list[list[float]]:
        return [[box[0] * scale_x, box[1] * scale_y, box[2] * scale_x, box[3] * scale_y] for box in boxes]

    rgb = draw_boxes(resized, scaled(source.boxes), DETECTOR_COLOUR, thickness)
    return draw_boxes(resized, scaled(source.curator_boxes), CURATOR_COLOUR, thickness, rgb=rgb)


class HalfBlockImage:
    """A Rich renderable that shows an RGB array with one character per two vertical pixels."""

    def __init__(self, rgb: np.ndarray) -> None:
        if rgb.shape[0] % 2:
            rgb = np.concatenate([rgb, np.zeros((1, *rgb.shape[1:]), dtype=rgb.dtype)])
        self.rgb = rgb

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        styles: dict[tuple[int, ...], Style] = {}
        for row in range(0, self.rgb.shape[0], 2):
            upper, lower = self.rgb[row], self.rgb[row + 1]
            for top, bottom in zip(upper, lower):
                key = (*top, *bottom)
                style = styles.get(key)
                if style is None:
                    style = Style(color=Color.from_rgb(*top), bgcolor=Color.from_rgb(*bottom))
                    styles[key] = style
                yield Segment(UPPER_HALF_BLOCK, style)
            yield Segment.line()


class HalfBlockPreview(Widget):
    """An image preview drawn with half-block characters; works in any colour terminal."""

    source: reactive[PreviewSource | None] = reactive(None, layout=True)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._drawn: tuple[PreviewSource, int, int, HalfBlockImage] | None = None

    def render(self) -> HalfBlockImage | str:
        """Scale the source to the space the widget has and draw it (reusing the last drawing)."""
        if self.source is None:
            return ""
        columns, rows = self.content_size.width, self.content_size.height
        if columns < 1 or rows < 1:
            return ""
        if self._drawn is not None and self._drawn[:3] == (self.source, columns, rows):
            return self._drawn[3]
        height, width = self.source.pixels.shape
        # A terminal cell is about twice as tall as it is wide, so one cell shows two square pixels.
        fitted_width, fitted_height = fit_size(width, height, columns, rows * 2)
        drawing = HalfBlockImage(render_pixels(self.source, fitted_width, fitted_height))
        self._drawn = (self.source, columns, rows, drawing)
        return drawing


class GraphicsPreview(Widget):
    """An image preview sent to the terminal as Sixel or Kitty graphics through textual-image.

    Import it only after ``textual_image.widget`` has probed the terminal, which must happen
    before the app starts (see ``detect_graphics``).
    """

    source: reactive[PreviewSource | None] = reactive(None)

    def compose(self) -> ComposeResult:
        """Hold one textual-image widget that fills the preview."""
        from textual_image.widget import Image as TerminalImage

        yield TerminalImage(id="terminal-image")

    def watch_source(self, source: PreviewSource | None) -> None:
        """Draw the boxes at the source's own resolution and hand the picture to textual-image."""
        from PIL import Image as PILImage

        if not self.is_mounted:
            return
        terminal_image = self.query_one("#terminal-image")
        if source is None:
            terminal_image.image = None
            return
        height, width = source.pixels.shape
        thickness = max(1, max(height, width) // 200)
        terminal_image.image = PILImage.fromarray(render_pixels(source, width, height, thickness))

    def on_mount(self) -> None:
        """Show a source that was set before the widget was mounted."""
        self.watch_source(self.source)


def detect_graphics() -> bool:
    """Return True when stdout is a terminal that speaks Sixel or the Kitty graphics protocol.

    textual-image queries the terminal when it is imported, which only works before Textual takes
    over stdin, so call this before ``App.run``.
    """
    import sys

    if not sys.stdout.isatty():
        return False
    try:
        import textual_image.widget  # noqa: F401 - the import probes the terminal's cell size
        from textual_image.renderable import Image, SixelImage, TGPImage
    except Exception as error:  # noqa: BLE001 - any probe failure means: use half blocks
        logging.getLogger(__name__).info("terminal graphics unavailable (%s); using half blocks", error)
        return False
    return Image in (SixelImage, TGPImage)
