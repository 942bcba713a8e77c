"""Packaged demo and test data written out as real files: Fashion-MNIST PNGs, sample photos, fortunes,
WordNet noun glosses."""
from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
                   "bag", "ankle-boot")
FORTUNES_DIR = Path("/usr/share/games/fortunes")
FORTUNE_CATEGORIES = ("computers", "food", "law", "medicine", "sports")
WORDNET_NOUNS = Path("/usr/share/wordnet/data.noun")
# WordNet's noun lexicographer files (supersenses), by their number in data.noun
NOUN_SUPERSENSES = {3: "Tops", 4: "act", 5: "animal", 6: "artifact", 7: "attribute", 8: "body",
                    9: "cognition", 10: "communication", 11: "event", 12: "feeling", 13: "food",
                    14: "group", 15: "location", 16: "motive", 17: "object", 18: "person",
                    19: "phenomenon", 20: "plant", 21: "possession", 22: "process", 23: "quantity",
                    24: "relation", 25: "shape", 26: "state", 27: "substance", 28: "time"}


def _missing(path: Path, package: str) -> FileNotFoundError:
    return FileNotFoundError(f"{path} is missing: install the Debian package `{package}` "
                             "(`make data` does)")


def fashion_mnist(n: int, seed: int = 0, split: str = "t10k") -> tuple[np.ndarray, np.ndarray]:
    """n images [n, 28, 28] uint8 and labels [n], a seeded class-balanced sample of one split."""
    images_file, labels_file = (FASHION_DIR / f"{split}-images-idx3-ubyte.gz",
                                FASHION_DIR / f"{split}-labels-idx1-ubyte.gz")
    if not images_file.exists():
        raise _missing(images_file, "dataset-fashion-mnist")
    with gzip.open(labels_file) as fh:
        labels = np.frombuffer(fh.read(), np.uint8, offset=8)
    with gzip.open(images_file) as fh:
        images = np.frombuffer(fh.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    rng = np.random.default_rng(seed)
    per_class = -(-n // len(FASHION_CLASSES))
    chosen = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class]
                             for c in range(len(FASHION_CLASSES))])
    chosen = np.sort(rng.permutation(chosen)[:n])
    return images[chosen], labels[chosen]


def write_fashion_mnist(folder: Path, n: int, seed: int = 0) -> dict[str, str]:
    """PNG files `<class>/<index>.png`; returns {relative path: class}."""
    from PIL import Image

    images, labels = fashion_mnist(n, seed)
    classes = {}
    for i, (image, label) in enumerate(zip(images, labels)):
        rel = f"{FASHION_CLASSES[label]}/{i:05d}.png"
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(255 - image).save(folder / rel)  # dark item on white, like a product photo
        classes[rel] = FASHION_CLASSES[label]
    return classes


def sample_photos() -> list[Path]:
    """The colour photos shipped with scikit-image and scikit-learn."""
    import skimage
    import sklearn.datasets

    skimage_dir = Path(skimage.__file__).parent / "data"
    names = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
             "hubble_deep_field.jpg", "retina.jpg", "camera.png", "coins.png", "moon.png")
    photos = [skimage_dir / n for n in names if (skimage_dir / n).exists()]
    sklearn_dir = Path(sklearn.datasets.__file__).parent / "images"
    return photos + sorted(sklearn_dir.glob("*.jpg"))


def write_sample_photos(folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for photo in sample_photos():
        shutil.copy(photo, folder / photo.name)
    return [p.name for p in sample_photos()]


def fortunes(categories: tuple[str, ...] = FORTUNE_CATEGORIES, max_chars: int = 600) -> list[dict]:
    """Fortune cookies from Debian `fortunes`: [{id, category, text}], short ones only."""
    rows = []
    for category in categories:
        path = FORTUNES_DIR / category
        if not path.exists():
            raise _missing(path, "fortunes")
        entries = path.read_text(encoding="utf-8", errors="replace").split("\n%\n")
        for i, entry in enumerate(entries):
            text = " ".join(entry.split())
            if 20 <= len(text) <= max_chars:
                rows.append({"id": f"{category}-{i:04d}", "category": category, "text": text})
    return rows


def wordnet_nouns(supersenses: tuple[str, ...] = ()) -> list[dict]:
    """WordNet noun synsets from Debian `wordnet-base`: [{id, word, supersense, text}], where text is
    "word: first sentence of the gloss"; all 82k synsets, or only those of `supersenses`."""
    if not WORDNET_NOUNS.exists():
        raise _missing(WORDNET_NOUNS, "wordnet-base")
    rows = []
    with WORDNET_NOUNS.open(encoding="latin-1") as fh:
        for line in fh:
            if line.startswith("  "):  # the licence header
                continue
            fields, _, gloss = line.partition("| ")
            parts = fields.split()
            supersense = NOUN_SUPERSENSES.get(int(parts[1]), "")
            if supersenses and supersense not in supersenses:
                continue
            word = parts[4].replace("_", " ")
            rows.append({"id": f"n{parts[0]}", "word": word, "supersense": supersense,
                         "text": f"{word}: {gloss.split(';')[0].strip()}"})
    return rows


def write_fortunes(path: Path, n: int, seed: int = 0) -> int:
    """A JSON Lines file of up to n fortunes, a seeded sample across the categories."""
    rows = fortunes()
    order = np.random.default_rng(seed).permutation(len(rows))[:n]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for i in sorted(order):
            fh.write(json.dumps(rows[i]) + "\n")
    return len(order)
