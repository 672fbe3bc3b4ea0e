"""Write report.html, the page `dvc plots show` fills, with Vega, Vega-Lite and Vega-Embed inlined.

The three libraries come from the npm registry at the versions pinned in package.json
(`npm ci` installs them into node_modules/); their licence files are copied to licenses/.
The page loads nothing from the network, so the report renders offline.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

HERE = Path(__file__).parent
MODULES = HERE / "node_modules"
SCRIPTS = ["vega/build/vega.min.js", "vega-lite/build/vega-lite.min.js", "vega-embed/build/vega-embed.min.js"]
# The vega package ships no licence file of its own; its sibling packages from the same
# repository carry the project's licence. vega.min.js bundles d3 modules (ISC licence).
LICENSES = {
    "vega": "vega-view/LICENSE",
    "vega-lite": "vega-lite/LICENSE",
    "vega-embed": "vega-embed/LICENSE",
    "d3": "d3-scale/LICENSE",
}
PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>initstudy: DVC plots</title>
<!-- {versions}: inlined from the npm registry by plots/vega/build.py; licences in plots/vega/licenses/ -->
{scripts}
<style>
  body {{ font-family: sans-serif; margin: 1em; }}
  body > div {{ display: inline-block; vertical-align: top; margin: 0 1.5em 1.5em 0; }}
  img {{ max-width: 100%; }}
  /* a PNG per revision (dvc plots diff): side by side, scaled down to fit the window */
  body > div {{ max-width: calc(100vw - 3em); }}
  body > div > div:not(:only-of-type) {{ max-width: calc(50vw - 3.5em); }}
  .notice {{ background: #fff3cd; border: 1px solid #e0c36b; padding: 0.6em 1em; max-width: 60em; }}
</style>
</head>
<body>
<noscript><p class="notice">The interactive plots (accuracy and loss per epoch) need JavaScript, which is
off here, so they stay blank. The images (PNG) below show without it; the numbers are in
<code>metrics/results.md</code>.</p></noscript>
{{plot_divs}}
</body>
</html>
"""


def version(package: str) -> str:
    return json.loads((MODULES / package / "package.json").read_text())["version"]


def main() -> None:
    versions = ", ".join(f"{p}@{version(p)}" for p in ("vega", "vega-lite", "vega-embed"))
    scripts = []
    for script in SCRIPTS:
        code = (MODULES / script).read_text(encoding="utf8")
        if "</script" in code or "{plot_divs}" in code:
            raise SystemExit(f"{script} cannot be inlined: it holds '</script' or '{{plot_divs}}'")
        scripts.append(f"<script>\n{code}\n</script>")
    (HERE / "report.html").write_text(PAGE.format(versions=versions, scripts="\n".join(scripts)), encoding="utf8")
    (HERE / "licenses").mkdir(exist_ok=True)
    for name, path in LICENSES.items():
        shutil.copyfile(MODULES / path, HERE / "licenses" / f"{name}.LICENSE")
    print(f"wrote {HERE / 'report.html'} with {versions}")


if __name__ == "__main__":
    main()
