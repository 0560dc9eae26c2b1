"""One hash pins a whole preset: the manifest of per-file sha256s.

A preset folder holds `manifest.json`, `{"format": 1, "files": {path:
sha256}}`, listing every other file of the folder (config, weights,
metadata, card, recipe, pictures). The preset's sha256 is the sha256 of the
manifest's bytes: it is what the shipped registry keeps, what
`tfvae.zoo.info(name)["sha256"]` and the card show, and what a URL load
takes. `verify` checks every file against the manifest, and that no file is
missing or unlisted, before anything of the preset is read.

The card shows the preset's sha256 on one line of a fixed form
(`CARD_LINE`); its manifest entry is the sha256 of the card with that line's
hash zeroed (the hash of the manifest cannot be inside a file the manifest
covers), and `verify` also checks that the line shows the true hash. Any
other change to the card changes its entry.
"""

import hashlib
import json
import os
import re

__all__ = [
    "CARD_LINE",
    "MANIFEST_FILE",
    "PresetError",
    "card_line",
    "normalize_sha256",
    "preset_sha256",
    "sha256_of_file",
    "verify",
    "write",
]

MANIFEST_FILE = "manifest.json"
_FORMAT = 1
# The card's line that shows the preset's sha256.
CARD_LINE = "- Preset sha256 (of `manifest.json`): `{}`"
_CARD_FILE = "README.md"
_CARD_PATTERN = re.compile(
    "^" + re.escape(CARD_LINE).replace(r"\{\}", "([0-9a-f]{64})") + "$", re.M
)
_ZEROS = "0" * 64
_HEX = re.compile("^[0-9a-f]{64}$")


class PresetError(ValueError):
    """A preset that cannot be found or does not verify."""


def card_line(sha256=_ZEROS):
    """The card's line that shows the preset's sha256 (zeros: to be filled)."""
    return CARD_LINE.format(sha256)


def normalize_sha256(value, name="sha256"):
    """A sha256 as 64 lower-case hex digits; either case is accepted."""
    text = str(value).strip().lower() if isinstance(value, str) else None
    if text is None or not _HEX.match(text):
        raise PresetError(
            f"`{name}` must be a sha256: 64 hexadecimal digits. "
            f"Received: {name}={value!r}"
        )
    return text


def sha256_of_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _card_digest(path):
    """The sha256 of the card with its preset-sha256 line zeroed."""
    with open(path, "rb") as file:
        text = file.read().decode("utf-8", errors="surrogateescape")
    zeroed = _CARD_PATTERN.sub(card_line(), text)
    return hashlib.sha256(zeroed.encode("utf-8", errors="surrogateescape")).hexdigest()


def _digest(folder, relative):
    path = os.path.join(folder, relative)
    if relative == _CARD_FILE:
        return _card_digest(path)
    return sha256_of_file(path)


def _files(folder):
    """Every file under `folder` but the manifest, as sorted relative paths."""
    found = []
    for root, directories, names in os.walk(folder):
        directories.sort()
        for name in names:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, folder).replace(os.sep, "/")
            if relative != MANIFEST_FILE:
                found.append(relative)
    return sorted(found)


def preset_sha256(folder):
    """The preset's sha256: that of its manifest's bytes."""
    return sha256_of_file(os.path.join(folder, MANIFEST_FILE))


def write(folder):
    """Writes the manifest of a filled preset folder and the card's hash line.

    The card (`README.md`), if there is one, must hold `card_line()` (zeros);
    the line gets the preset's sha256. Returns that sha256.
    """
    files = {relative: _digest(folder, relative) for relative in _files(folder)}
    text = json.dumps({"format": _FORMAT, "files": files}, indent=2, sort_keys=True)
    with open(os.path.join(folder, MANIFEST_FILE), "w") as file:
        file.write(text + "\n")
    sha256 = preset_sha256(folder)
    card = os.path.join(folder, _CARD_FILE)
    if os.path.exists(card):
        with open(card) as file:
            content = file.read()
        if content.count(card_line()) != 1:
            raise ValueError(f"{card} must hold the line {card_line()!r} once")
        with open(card, "w") as file:
            file.write(content.replace(card_line(), card_line(sha256)))
    return sha256


def verify(folder, expected=None, what="preset"):
    """Checks every file of a preset folder; returns the preset's sha256.

    Raises `PresetError`, naming the file, when the manifest is missing or
    not the `expected` sha256, a file is missing, unlisted, a link, or does
    not match its sha256, or the card shows another sha256.
    """
    manifest = os.path.join(folder, MANIFEST_FILE)
    if not os.path.isfile(manifest):
        raise PresetError(
            f"The {what} in {folder} has no {MANIFEST_FILE}, which lists the "
            "sha256 of each of its files; nothing was loaded."
        )
    sha256 = preset_sha256(folder)
    if expected is not None and sha256 != normalize_sha256(expected):
        raise PresetError(
            f"The {what} in {folder} has sha256 {sha256} (of {MANIFEST_FILE}), "
            f"expected {normalize_sha256(expected)}; nothing was loaded."
        )
    try:
        with open(manifest) as file:
            listed = json.load(file)["files"]
        assert isinstance(listed, dict)
    except (ValueError, KeyError, TypeError, AssertionError):
        raise PresetError(
            f"{manifest} is not a tfvae manifest ({{'format': 1, 'files': "
            "{path: sha256}}); nothing was loaded."
        ) from None
    present = _files(folder)
    for relative in sorted(set(listed) | set(present)):
        path = os.path.join(folder, relative)
        if relative not in present:
            problem = "is missing"
        elif relative not in listed:
            problem = f"is not listed in {MANIFEST_FILE}"
        elif os.path.islink(path):
            problem = "is a symbolic link"
        else:
            actual = _digest(folder, relative)
            if actual == listed[relative]:
                continue
            problem = f"has sha256 {actual}, expected {listed[relative]}"
        raise PresetError(
            f"File {relative!r} of the {what} in {folder} {problem}; it was "
            "changed after publishing, or damaged. Nothing was loaded."
        )
    card = os.path.join(folder, _CARD_FILE)
    if os.path.exists(card):
        with open(card, encoding="utf-8", errors="replace") as file:
            shown = _CARD_PATTERN.findall(file.read())
        if shown != [sha256]:
            raise PresetError(
                f"File {_CARD_FILE!r} of the {what} in {folder} shows sha256 "
                f"{shown}, but the preset's is {sha256}. Nothing was loaded."
            )
    return sha256
