"""Rebuild the shipped ``pystdlib`` test split from this interpreter's standard library.

    python resnet_probe/data/sample/build_pystdlib.py

Writes ``pystdlib_test.txt.xz`` beside this script (the held-out files joined, xz preset 9: the
output depends only on the text) and pins its sha256 and this Python's version in
``resnet_probe/data/text.py``. Which files are held out depends only on their paths
(:func:`resnet_probe.data.text.is_held_out`), so another Python version holds out the same modules
where it has them.
"""

from __future__ import annotations

import hashlib
import lzma
import re
import sys
import sysconfig
from pathlib import Path

from resnet_probe.data import text as text_module
from resnet_probe.data.text import PYSTDLIB_FILE, file_paths, read_stdlib


def main() -> None:
    """Write the compressed test split and pin its digest and Python version in text.py."""
    root = Path(sysconfig.get_paths()["stdlib"])
    text, files = read_stdlib(root, held_out=True)
    raw = lzma.compress(text.encode("utf-8"), format=lzma.FORMAT_XZ, preset=9)
    PYSTDLIB_FILE.write_bytes(raw)
    digest = hashlib.sha256(raw).hexdigest()
    python = ".".join(map(str, sys.version_info[:3]))
    module = Path(text_module.__file__)
    source = module.read_text(encoding="utf-8")
    source = re.sub(r'^PYSTDLIB_SHA256 = "[^"]*"', f'PYSTDLIB_SHA256 = "{digest}"', source, count=1, flags=re.M)
    source = re.sub(r'^PYSTDLIB_PYTHON = "[^"]*"', f'PYSTDLIB_PYTHON = "{python}"', source, count=1, flags=re.M)
    module.write_text(source, encoding="utf-8")
    print(
        f"{PYSTDLIB_FILE.name}: {files} files of Python {python}, {len(text.encode()):,} bytes of text, "
        f"{len(raw):,} compressed, sha256 {digest}"
    )
    print("held out:", " ".join(file_paths(text)))


if __name__ == "__main__":
    main()
