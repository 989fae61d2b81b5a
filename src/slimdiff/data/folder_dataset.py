"""A folder of image files as a dataset: every image below it, recursively, in sorted path order."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from slimdiff.data.image_files import IMAGE_SUFFIXES, READ_ERRORS, SkippingDataset, image_files
from slimdiff.data.transforms import check_pixel_limit, open_image
from slimdiff.errors import DataError


class FolderDataset(SkippingDataset):
    """Every image below a folder (recursively), in sorted path order."""

    def __init__(
        self,
        root: Path,
        size: int,
        *,
        strict: bool = False,
        length: int | None = None,
        conditioning: str = "none",
    ):
        self.size, self.strict, self.skipped = size, strict, []
        candidates = image_files(root)
        if not candidates:
            raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {root}")
        # A cheap header + structure check up front, so a non-image or a cut-short PNG never enters an epoch.
        self.paths = []
        for path in candidates:
            try:
                with Image.open(path) as image:
                    check_pixel_limit(image, str(path))
                    image.verify()
            except READ_ERRORS as error:
                self._bad(str(path), error)
                continue
            self.paths.append(path)
        if not self.paths:
            raise DataError(f"none of the {len(candidates)} image files under {root} could be read")
        if length is not None:
            self.paths = self.paths[:length]
        self._condition(conditioning, root, str(root))

    def __len__(self) -> int:
        return len(self.paths)

    def _name(self, index: int) -> str:
        return str(self.paths[index])

    def _load(self, index: int) -> Image.Image:
        return open_image(self.paths[index])
