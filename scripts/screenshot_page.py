"""Screenshot an HTML file in headless Chromium (Debian's `chromium` + Playwright from pip), full page.

python scripts/screenshot_page.py results/view/answer.html results/view/answer-screenshot.png
"""

import argparse

from dllg.view.browser import screenshot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", help="the HTML file to open")
    parser.add_argument("png", help="the PNG file to write")
    args = parser.parse_args()
    print(f"wrote {screenshot(args.html, args.png)}")


if __name__ == "__main__":
    main()
