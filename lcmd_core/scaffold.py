"""`lcmd new-plugin NAME`: a ready plugin package from `plugin_template/`.

The package registers a codec, a data set, a `tiny` preset and a metric for a small offline
modality (sorted digit strings), with tests that use `CodecConformance`; it installs, lists
and passes its tests unchanged, and is meant to be edited into the author's modality.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from string import Template

from lcmd_core.plugins import PLUGIN_API, PluginError

TEMPLATE = Path(__file__).with_name("plugin_template")
NAME = re.compile(r"[a-z][a-z0-9_]*")


def new_plugin(name: str, directory: Path | None = None) -> Path:
    """Write the package of plugin `name` into `directory` (default `./lcmd-NAME-plugin`)."""
    if not NAME.fullmatch(name) or keyword.iskeyword(name):
        raise PluginError(
            f"plugin name {name!r}: use lower-case letters, digits and _ , starting with a "
            "letter (it names the entry point and the package lcmd_NAME)"
        )
    dist = f"lcmd-{name.replace('_', '-')}-plugin"
    out = Path(directory) if directory is not None else Path(dist)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PluginError(f"{out} already exists and is not empty; choose another --dir")
    package = f"lcmd_{name}"
    values = {"name": name, "dist": dist, "package": package, "api": str(PLUGIN_API)}
    for template in sorted(TEMPLATE.rglob("*.tmpl")):
        relative = template.relative_to(TEMPLATE).with_suffix("")
        if relative.parts[0] == "package":
            relative = Path(package, *relative.parts[1:])
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(Template(template.read_text()).substitute(values), encoding="utf-8")
    return out
