"""Save SVG screenshots of the browse, look, splits and jobs screens of a real catalog.

    python -m tui.screenshots --home /tmp/tui-home --out docs/screenshots

The catalog is only read: the splits screen shows a preview, nothing is created or flagged.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from curator.query import parse
from curator.settings import Settings
from tui.app import CuratorApp
from tui.pilot import settle, type_query, type_text
from tui.screens.look import LookScreen
from tui.services import CuratorServices

SIZE = (140, 44)


async def save_screenshots(settings: Settings, out: Path, split_query: str) -> list[Path]:
    """Drive the app through its main screens and save one SVG per screen; return the files."""
    out.mkdir(parents=True, exist_ok=True)
    services = CuratorServices(settings)
    flagged = services.page(parse("marked"), limit=1)
    first = flagged[0].id if flagged else services.page(parse(""), limit=1)[0].id
    app = CuratorApp(services, graphics=False)
    saved: list[Path] = []
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await type_query(pilot, "CC original")
        await pilot.press("escape", "down", "down")
        await settle(pilot)
        saved.append(Path(app.save_screenshot("browse.svg", str(out))))

        await app.push_screen(LookScreen(first))
        await settle(pilot)
        saved.append(Path(app.save_screenshot("look.svg", str(out))))
        await pilot.press("escape")

        await pilot.press("2")
        await settle(pilot)
        for field_id, value in {"split-name": "normal-vs-cancer", "split-query": split_query, "test-fraction": "0.25",
                                "val-fraction": "0.2", "seed": "1"}.items():
            field = app.screen.query_one(f"#{field_id}")
            field.value = ""
            field.focus()
            await type_text(pilot, value)
        await pilot.press("ctrl+r")
        await settle(pilot)
        app.screen.query_one("#splits").focus()
        await settle(pilot)
        saved.append(Path(app.save_screenshot("splits.svg", str(out))))

        await pilot.press("3")
        await settle(pilot)
        await pilot.pause(1.2)
        await settle(pilot)
        saved.append(Path(app.save_screenshot("jobs.svg", str(out))))
    return saved


def main() -> None:
    """Parse the options and save the screenshots."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="Data home of the catalog (default: CURATOR_HOME).")
    parser.add_argument("--db", help="Database URL (default: catalog.db in the data home).")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"), help="Folder for the SVG files.")
    parser.add_argument("--split-query", default="normal cancer original", help="Query words for the split preview.")
    arguments = parser.parse_args()
    saved = asyncio.run(save_screenshots(Settings.resolve(arguments.home, arguments.db), arguments.out, arguments.split_query))
    for path in saved:
        print(path)


if __name__ == "__main__":
    main()
