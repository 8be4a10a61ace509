"""File references inside model files (glTF URIs, OBJ mtllib, MTL texture maps).

A model from an unknown source must not make difflod read files elsewhere on
the machine, so a reference is resolved against the folder of the file that
names it and must stay inside the model's folder: no `..` escapes, no
absolute paths (`/etc/x`, `C:\\x`), no symbolic links leading out, no `file:`
URIs. `ReadLimits.allow_outside_paths` lifts that rule (then `file:` URIs are
read as local paths). URIs of other schemes (`http:`, `ftp:`, ...) are always
refused: difflod never fetches anything. `data:` URIs are the glTF reader's
business and never reach this module.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

__all__ = ["resolve_reference"]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_ALLOW = "(allow it with allow_outside_paths / --allow-outside-paths)"


def resolve_reference(name: str, base: Path, root: Path, allow_outside: bool,
                      fail: Callable[[str], Exception], *, uri: bool = False) -> Path:
    """The file that reference `name` means, resolved (symbolic links followed).

    Args:
        name: the reference as written (a relative path, or for `uri=True` a
            percent-encoded URI reference).
        base: the folder it is relative to (the folder of the file naming it).
        root: the model's folder, which the result must lie in.
        allow_outside: accept references leading out of `root` (and `file:`).
        fail: makes the exception to raise from a one-line problem description.
        uri: `name` is a URI (glTF): percent escapes are decoded.
    Raises:
        whatever `fail` returns, for a refused reference.
    """
    text = name.strip()
    scheme = _SCHEME.match(text)
    if scheme and len(scheme.group(1)) > 1:  # one letter: a Windows drive, handled below
        if scheme.group(1).lower() != "file":
            raise fail(f"{name!r} is a {scheme.group(1)}: URI; difflod reads only local files")
        if not allow_outside:
            raise fail(f"{name!r} is a file: URI, which may lead anywhere; refused {_ALLOW}")
        return Path(os.path.realpath(unquote(urlsplit(text).path)))
    rel = unquote(text) if uri else text.strip('"')
    rel = rel.replace("\\", "/")
    if "\0" in rel:
        raise fail(f"{name!r} holds a NUL character")
    absolute = rel.startswith("/") or re.match(r"^[A-Za-z]:/", rel) is not None
    if absolute and not allow_outside:
        raise fail(f"{name!r} is an absolute path, outside the model's folder; refused "
                   f"{_ALLOW}")
    try:
        target = Path(os.path.realpath(Path(base) / rel))
    except (OSError, ValueError) as exc:
        raise fail(f"{name!r} is not a usable path: {exc}") from None
    if not allow_outside:
        root_real = os.path.realpath(root)
        if os.path.commonpath([root_real, str(target)]) != root_real:
            raise fail(f"{name!r} leads outside the model's folder {root}; refused {_ALLOW}")
    try:
        target.stat()
    except (FileNotFoundError, NotADirectoryError):
        pass  # the caller names the missing file
    except OSError as exc:  # a name too long, a loop of links, no permission
        raise fail(f"{name!r} cannot be used: {exc.strerror or exc}") from None
    return target
