"""The preprocessing contract: what a member must be fed, shipped inside every artifact.

A deployed classifier is only correct if the consumer feeds it exactly what training fed it; storing
this contract *in* the artifact (not in a side README) keeps the two from drifting apart.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from famc.errors import FamcError
from famc.io import known

#: Metadata key under which the full contract is stored as JSON (ONNX and CoreML alike).
METADATA_KEY = "famc.preprocessing"

_RESIZE_MODES = ("bilinear", "bicubic", "nearest", "area")


class Preprocessing(BaseModel):
    """What a consumer must feed the model: ``(x / 255 - mean) / std`` at ``resolution``², the
    image resized whole to ``resolution``² or, with ``crop_ratio``, its shorter side resized to
    ``ceil(resolution / crop_ratio)`` and centre-cropped (ImageNet evaluation; OFA uses 0.875)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    resolution: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: Annotated[str, AfterValidator(known(_RESIZE_MODES, "resize mode"))] = "bilinear"
    crop_ratio: float | None = Field(None, gt=0, le=1)
    layout: Literal["NCHW"] = "NCHW"
    class_names: tuple[str, ...]

    @field_validator("resolution", "channels")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v <= 0:
            raise ValueError("must be > 0")
        return v

    @field_validator("std")
    @classmethod
    def _nonzero_std(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(s <= 0 for s in v):
            raise ValueError("every std must be > 0")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Preprocessing:
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(
                f"mean/std need one value per channel ({self.channels}), "
                f"got {len(self.mean)}/{len(self.std)}"
            )
        if not self.class_names:
            raise ValueError("class_names must not be empty")
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError("class_names must be unique")
        return self

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def input_shape(self, batch: int) -> tuple[int, int, int, int]:
        """NCHW shape of one input batch; the single source for every exporter's shapes."""
        return (batch, self.channels, self.resolution, self.resolution)

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str, source: str = "metadata") -> Preprocessing:
        """Parse stored metadata; a bad blob is a user-fixable problem with that artifact."""
        try:
            return cls.model_validate(json.loads(text))
        except (ValueError, ValidationError) as e:
            first = str(e).splitlines()[0]
            raise FamcError(f"{source}: invalid '{METADATA_KEY}' metadata ({first})") from e

    def metadata(self) -> dict[str, str]:
        """Flat string metadata: the full JSON plus human-readable keys for tools like Netron."""
        crop = {} if self.crop_ratio is None else {"famc.crop_ratio": str(self.crop_ratio)}
        return crop | {
            METADATA_KEY: self.to_json(),
            "famc.resolution": str(self.resolution),
            "famc.channels": str(self.channels),
            "famc.mean": json.dumps(list(self.mean)),
            "famc.std": json.dumps(list(self.std)),
            "famc.resize": self.resize,
            "famc.layout": self.layout,
            "famc.num_classes": str(self.num_classes),
            "famc.class_names": json.dumps(list(self.class_names)),
        }
