"""A folder of class folders is the table it stands for: a row per file, its path (relative to
the folder) in `file` and its class in `label`; the kind of its files decides how they are
read (a kind names the suffixes it reads: registry.KINDS).

Two layouts are read. One sub-folder per class (torchvision's `ImageFolder` convention), which
the run splits itself; or `train/` and `test/` (and optionally `val/`), each holding class
folders, used as given (the course's `pizza_steak_sushi`): the table then has a `split`
column. A class is a folder's name, and classes are sorted by name, as torchvision sorts
them, so that labels match its numbering.

Hidden files and folders, files of other suffixes, and loose files next to the class folders
are ignored; a class folder's sub-folders are searched too. In the splits layout, train/
names the classes: a class that test/ or val/ lacks is fine, one that only they have is an
error. train/ without test/ is an error too, rather than a guess that "train" is a class:
move the class folders up to let the run split them itself.

This module imports no torch: the command line asks which kind a folder holds before it
imports anything heavy.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from torchwork.config import SPLITS  # the split folders, in order
from torchwork.errors import DataError

ALL = "all"  # the one split of the classes layout, which the run splits itself
_IGNORED_FOLDERS = {"__MACOSX"}  # what macOS adds to a zip file, not a class


@dataclass(frozen=True)
class ClassFolder:
    """The files found in a folder: its layout, the classes, and the files of each split."""

    root: Path
    layout: Literal["classes", "splits"]  # class folders in root, or train/ test/ [val/]
    classes: tuple[str, ...]  # sorted by name; a label is an index into them
    folders: dict[str, Path]  # split ("all" in the classes layout) -> the folder it is in
    files: dict[str, tuple[Path, ...]]  # split -> its files, by class, then by name
    labels: dict[str, tuple[int, ...]]  # split -> the class of each of its files
    noun: str = "files"  # what the files are, for messages: "images", "text files"

    @property
    def splits(self) -> tuple[str, ...]:
        """("all",), or ("train", "test") with "val" between them when there is one."""
        return tuple(self.files)

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """Files per class in each split; a class a split does not have counts 0."""
        result = {}
        for split, labels in self.labels.items():
            per_class = [0] * len(self.classes)
            for k in labels:
                per_class[k] += 1
            result[split] = dict(zip(self.classes, per_class, strict=True))
        return result

    def table(self) -> Any:
        """The table the folder stands for: `file` (the path relative to the folder, with
        / between its parts), `label` (the class), and in the splits layout `split`."""
        import pyarrow as pa

        files = [f.relative_to(self.root).as_posix() for s in self.splits for f in self.files[s]]
        labels = [self.classes[k] for s in self.splits for k in self.labels[s]]
        columns = {"file": pa.array(files, pa.string()), "label": pa.array(labels, pa.string())}
        if self.layout == "splits":
            columns["split"] = pa.array(
                [s for s in self.splits for _ in self.files[s]], pa.string()
            )
        return pa.table(columns)

    def without(self, dropped: Iterable[str | Path]) -> ClassFolder:
        """This folder without the files dropped as unusable (skip_bad), to label and count
        what was kept. A class left with no files in train/ (or in the classes layout),
        or a split left empty, is an error: there would be nothing to learn or test it on."""
        gone = {Path(p) for p in dropped}
        files, labels = {}, {}
        for split in self.splits:
            kept = [
                (f, y)
                for f, y in zip(self.files[split], self.labels[split], strict=True)
                if f not in gone
            ]
            files[split] = tuple(f for f, _ in kept)
            labels[split] = tuple(y for _, y in kept)
        first = self.splits[0]
        left = set(labels[first])
        for k, name in enumerate(self.classes):
            if k not in left:
                raise DataError(
                    f"every {self.noun[:-1]} in {self.folders[first] / name} was dropped as unusable: "
                    f"add {self.noun} that can be read, or remove the folder"
                )
        for split in self.splits[1:]:
            if not files[split]:
                raise DataError(
                    f"every {self.noun[:-1]} in {self.folders[split]} was dropped as unusable: "
                    f"add {self.noun} that can be read"
                )
        return replace(self, files=files, labels=labels)


def find_files(folder: str | Path, suffixes: Sequence[str], noun: str = "files") -> ClassFolder:
    """The files of `folder` with these suffixes (any case), in one of the two layouts (see
    the module's docstring); `noun` names them in messages."""
    root = Path(folder)
    if not root.exists():
        raise DataError(f"folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"{root} is a file: give a folder with one sub-folder of {noun} per class")
    finder = _Finder(tuple(suffixes), noun)
    folders = _subfolders(root)
    splits = {f.name.lower(): f for f in folders if f.name.lower() in SPLITS}
    if not splits:
        if not folders:
            loose = len(finder.files_in(root, deep=False))
            found = f" (its {loose} {noun} are not in class folders)" if loose else ""
            example = suffixes[0] if suffixes else ""
            raise DataError(
                f"{root} has no class folders{found}: put the {noun} in one sub-folder per "
                f"class ({root / 'cat'}/1{example}, {root / 'dog'}/2{example})"
            )
        by_class = finder.by_class(folders)
        finder.check_train(root, by_class)
        return _class_folder(root, "classes", {ALL: root}, {ALL: by_class}, noun)
    others = [f.name for f in folders if f.name.lower() not in SPLITS]
    if others:
        raise DataError(
            f"{root} holds split folders ({', '.join(f.name for f in splits.values())}) and "
            f"other folders ({_some(others)}): keep only train/, test/ and val/ in it, or only "
            "class folders"
        )
    if "train" not in splits:
        raise DataError(
            f"{root} has {'/ and '.join(splits)}/ but no train/: add train/ with one sub-folder "
            f"of {noun} per class"
        )
    if "test" not in splits:
        raise DataError(
            f"{root} has {'/ and '.join(splits)}/ but no test/: add test/ with the same class "
            f"folders, or move the class folders up into {root} to let the run split them"
        )
    train = finder.by_class(_subfolders(splits["train"]))
    if not train:
        raise DataError(f"{splits['train']} has no class folders: add one sub-folder per class")
    finder.check_train(splits["train"], train)
    found = {"train": train}
    for split in ("val", "test"):
        if split not in splits:
            continue
        where = splits[split]
        by_class = finder.by_class(_subfolders(where))
        if not by_class:
            raise DataError(
                f"{where} has no class folders: give it those of {splits['train']} "
                f"({_some(list(train))})"
            )
        extra = [name for name in by_class if name not in train]
        if extra:
            raise DataError(
                f"class {extra[0]} is in {where} but not in {splits['train']}: add "
                f"{splits['train'] / extra[0]}, or remove {where / extra[0]}"
            )
        finder.check_files(where, by_class)
        found[split] = by_class
    ordered = {split: splits[split] for split in SPLITS if split in found}
    return _class_folder(root, "splits", ordered, {split: found[split] for split in ordered}, noun)


def list_files(
    path: str | Path, suffixes: Sequence[str], noun: str = "files"
) -> tuple[Path, list[Path]]:
    """The files to predict: (the folder they are named relative to, the files): one file as
    given, or every file of these suffixes in a folder and its sub-folders, sorted by path."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist: give a file or a folder of {noun}")
    if path.is_file():
        return path.parent, [path]
    files = _Finder(tuple(suffixes), noun).files_in(path)
    if not files:
        raise DataError(
            f"{path} holds no {noun} ({', '.join(suffixes)}): give a file or a folder of {noun}"
        )
    return path, files


def summary(folder: ClassFolder, dropped: int = 0) -> str:
    """One line for the run to print: the files found per class (and per split), e.g.
    "photos/: 3 classes, 120 images: cat 40, dog 50, fox 30"."""
    counts = folder.counts
    total = sum(len(files) for files in folder.files.values())
    head = f"{folder.root}/: {len(folder.classes)} classes, {total:,} {folder.noun}"
    if folder.layout == "classes":
        line = f"{head}: {_per_class(counts[ALL])}"
    else:
        parts = [
            f"{split} {len(folder.files[split]):,} ({_per_class(counts[split])})"
            for split in folder.splits
        ]
        line = f"{head}: {', '.join(parts)}"
    if dropped:
        line += f"; {dropped:,} unusable file{'s' if dropped != 1 else ''} dropped (--skip-bad)"
    return line


class _Finder:
    """Finds and checks the files of some suffixes in class folders."""

    def __init__(self, suffixes: tuple[str, ...], noun: str) -> None:
        self.suffixes, self.noun = suffixes, noun

    def files_in(self, folder: Path, deep: bool = True) -> list[Path]:
        """The files in `folder` (and its sub-folders, if deep), sorted by their path."""

        def unlistable(e: OSError) -> None:
            raise DataError(f"cannot list {e.filename}: {e.strerror or e}")

        found = []
        for top, dirs, names in os.walk(folder, onerror=unlistable):
            dirs[:] = [d for d in dirs if not d.startswith(".")] if deep else []
            found += [
                Path(top, name)
                for name in names
                if not name.startswith(".") and os.path.splitext(name)[1].lower() in self.suffixes
            ]
        return sorted(found, key=lambda p: p.relative_to(folder).parts)

    def by_class(self, folders: list[Path]) -> dict[str, list[Path]]:
        return {f.name: self.files_in(f) for f in folders}

    def check_files(self, where: Path, by_class: dict[str, list[Path]]) -> None:
        """Every class folder holds a file."""
        suffixes = " ".join(self.suffixes)
        if not any(by_class.values()):
            raise DataError(
                f"{where} has no {self.noun} ({suffixes}) in its class folders: add some to each"
            )
        for name, files in by_class.items():
            if not files:
                raise DataError(
                    f"class folder {where / name} has no {self.noun} ({suffixes}): add some, or "
                    "remove the folder"
                )

    def check_train(self, where: Path, by_class: dict[str, list[Path]]) -> None:
        """The classes to learn: files in each, and at least two."""
        self.check_files(where, by_class)
        if len(by_class) == 1:
            raise DataError(
                f"{where} has one class folder ({next(iter(by_class))}): a classifier needs at "
                f"least two, one sub-folder of {self.noun} per class"
            )


def _subfolders(folder: Path) -> list[Path]:
    """The folders in `folder` that may be classes or splits, sorted by name."""
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as e:
        raise DataError(f"cannot list {folder}: {e.strerror or e}") from None
    return [
        p
        for p in entries
        if p.is_dir() and not p.name.startswith(".") and p.name not in _IGNORED_FOLDERS
    ]


def _class_folder(
    root: Path,
    layout: Literal["classes", "splits"],
    folders: dict[str, Path],
    found: dict[str, dict[str, list[Path]]],
    noun: str,
) -> ClassFolder:
    classes = tuple(found[next(iter(found))])  # those of train/ (or all), sorted
    index = {name: k for k, name in enumerate(classes)}
    files = {
        split: tuple(f for fs in by_class.values() for f in fs) for split, by_class in found.items()
    }
    labels = {
        split: tuple(index[name] for name, fs in by_class.items() for _ in fs)
        for split, by_class in found.items()
    }
    return ClassFolder(root, layout, classes, folders, files, labels, noun)


def _per_class(counts: dict[str, int]) -> str:
    """ "cat 40, dog 50"; for many classes, the smallest and the largest."""
    if len(counts) <= 12:
        return ", ".join(f"{name} {n:,}" for name, n in counts.items())
    fewest = min(counts, key=counts.__getitem__)
    most = max(counts, key=counts.__getitem__)
    return f"{counts[fewest]:,} ({fewest}) to {counts[most]:,} ({most}) per class"


def _some(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
