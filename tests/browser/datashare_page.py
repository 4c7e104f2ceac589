"""Datashare's page with its plugins, served by the task-API double.

Datashare's ``RootResource`` answers its app's page with the plugins injected by
``PluginService.addPlugins`` (ICIJ/datashare, datashare-app): for each folder of
``--pluginsDir``, a ``<script src="/plugins/FOLDER/MAIN" defer>`` before
``</body>`` (``main`` from the folder's package.json, else its ``index.js``) and a
``<link rel="stylesheet" href="/plugins/FOLDER/STYLE">`` before ``</head>``; the
folders are served under ``/plugins``. A ``"private": true`` package.json with
``"datashare": {"projects": [...]}`` limits a plugin's script to users of those
projects: these tests host public plugins only, so that filter is not reproduced.

The app itself is ``datashare_core.js``, the contract double of Datashare's frontend
core (see its header for the datashare-client files it follows), on Vue's own build
from the npm registry, styled with Bootstrap's CSS as Datashare's page is (both in
``package.json`` here, installed by ``./ml-worker test``).
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.datashare_double import DatashareDouble

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
PLUGIN = ROOT / "plugin"
NODE_MODULES = HERE / "node_modules"
VUE = NODE_MODULES / "vue" / "dist"
BOOTSTRAP = NODE_MODULES / "bootstrap" / "dist" / "css"
PLUGINS_URL = "/plugins"

# Datashare's page, less its app: Bootstrap's style, the mount point, Vue, and the core (the app's
# module script runs deferred, as the plugins' scripts do, in document order).
APP_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Datashare</title>
<link rel="stylesheet" href="/app/bootstrap/bootstrap.min.css">
<link rel="stylesheet" href="/app/app.css">
</head>
<body>
<div id="app"></div>
<script src="/app/vue/vue.global.prod.js"></script>
<script src="/app/datashare_core.js" defer></script>
</body>
</html>
"""


def plugin_tags(plugins: dict[str, Path]) -> tuple[str, str]:
    """The scripts and the style links PluginService injects for these plugin
    folders (by their name in the plugins folder)."""
    scripts, links = [], []
    for name, folder in plugins.items():
        package = json.loads((folder / "package.json").read_text())
        main = package.get("main")
        if main is None and (folder / "index.js").is_file():
            main = "index.js"
        if main is not None:
            scripts.append(f'<script src="{PLUGINS_URL}/{name}/{main}" defer></script>')
        if package.get("style") is not None:
            href = f"{PLUGINS_URL}/{name}/{package['style']}"
            links.append(f'<link rel="stylesheet" href="{href}">')
    return "".join(scripts), "".join(links)


def app_page(plugins: dict[str, Path]) -> str:
    scripts, links = plugin_tags(plugins)
    return APP_PAGE.replace("</body>", scripts + "</body>").replace(
        "</head>", links + "</head>"
    )


def serve_app(datashare: DatashareDouble, plugins: dict[str, Path]) -> None:
    """Datashare's page at ``/`` with these plugins, their folders, and the app."""
    if not (VUE / "vue.global.prod.js").is_file():
        msg = f"Vue is not installed in {HERE}: run `npm ci --prefix {HERE}` (./ml-worker test does)"
        raise FileNotFoundError(msg)
    datashare.files["/app/bootstrap"] = BOOTSTRAP
    datashare.pages["/"] = app_page(plugins)
    datashare.files["/app/vue"] = VUE
    datashare.files["/app"] = HERE
    for name, folder in plugins.items():
        datashare.files[f"{PLUGINS_URL}/{name}"] = folder
