"""A Hugging Face dataset's image column as a dataset: a hub name, a local data dir, or `save_to_disk` output.
`datasets` is imported only when one is opened."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from slimdiff.data.image_files import SkippingDataset
from slimdiff.data.transforms import open_image
from slimdiff.errors import DataError


class HFDataset(SkippingDataset):
    """An image column of a Hugging Face dataset (hub name, local dataset dir, or `save_to_disk` output)."""

    def __init__(
        self,
        source: str,
        size: int,
        *,
        image_column: str,
        strict: bool = False,
        length: int | None = None,
        conditioning: str = "none",
        label_column: str | None = None,
        caption_column: str | None = None,
    ):
        self.size, self.strict, self.skipped = size, strict, []
        self.source = source
        table = open_hf(source)
        if image_column not in table.column_names:
            raise DataError(
                f"dataset {source!r} has no column {image_column!r}; "
                f"columns: {', '.join(table.column_names)} (set image_column)"
            )
        if len(table) == 0:
            raise DataError(f"dataset {source!r} is empty")
        if length is not None:
            table = table.select(range(min(length, len(table))))
        self._condition(conditioning, table, source, label_column, caption_column)
        self.column = table.cast_column(image_column, _image_feature(decode=False))[image_column]

    def __len__(self) -> int:
        return len(self.column)

    def _name(self, index: int) -> str:
        return f"{self.source}[{index}]"

    def _load(self, index: int) -> Image.Image:
        item = self.column[index]
        if item.get("bytes") is not None:
            return open_image(item["bytes"])
        return open_image(item["path"])


def _image_feature(decode: bool):
    from datasets import Image as ImageFeature

    return ImageFeature(decode=decode)


def open_hf(source: str):
    """The train split of a dataset saved with `save_to_disk`, a local data dir, or a hub name."""
    import datasets

    path = Path(source)
    try:
        if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
            loaded = datasets.load_from_disk(str(path))
        else:
            loaded = datasets.load_dataset(source)
    except (FileNotFoundError, ValueError, ConnectionError, OSError) as error:
        raise DataError(f"could not open dataset {source!r}: {error}") from None
    if isinstance(loaded, datasets.DatasetDict):
        split = "train" if "train" in loaded else next(iter(loaded))
        loaded = loaded[split]
    return loaded


def looks_like_hf_dir(path: Path) -> bool:
    """A folder that `datasets` opens as a table (saved with `save_to_disk`, or the hub layout of parquet /
    arrow files) rather than a folder of image files."""
    markers = ("dataset_info.json", "dataset_dict.json", "state.json")
    tables = ("*.parquet", "*/*.parquet", "*.arrow", "*/*.arrow")  # the hub layout keeps them in data/
    return any((path / m).exists() for m in markers) or any(next(path.glob(g), None) for g in tables)
