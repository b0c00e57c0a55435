"""The wire format of /v1/images/edits and /v1/images/variations: multipart forms and JSON
bodies turned into checked jobs by the same rules as generations plus the catalog's edit rules."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from easel.api.images.protocol import (
    DEFAULT_GPT_MODEL,
    DEFAULT_MODEL,
    RESPONSE_FORMATS,
    CreateImageRequest,
    ImageJob,
    RequestBody,
)
from easel.api.images.uploads import Form
from easel.catalog import ModelSpec
from easel.catalog.edit_rules import (
    EditFields,
    ImageFile,
    edit_plan,
    too_many_images,
    variation_plan,
)
from easel.catalog.output import OutputPlan
from easel.errors import InvalidRequestError, invalid_value, unknown_parameter

# The multipart names of an edit's images: the SDKs send `image`, or `image[]` for a list; some
# clients send `images[]`.
IMAGE_FIELDS = ("image", "image[]", "images[]")
MASK_FIELD = "mask"
# OpenAI's schema: at most 16 images in any edit request.
MAX_REQUEST_IMAGES = 16
# ImageRefParam's limit on an `image_url` (a data URL of a 15 MB file).
MAX_IMAGE_URL_CHARS = 20_971_520

_INTEGER_FIELDS = frozenset({"n", "partial_images", "output_compression", "seed"})
_BOOLEAN_FIELDS = frozenset({"stream"})
_BOOLEANS = {"true": True, "false": False}


class CreateEditRequest(CreateImageRequest):
    """An edit's fields besides its images: a generation's, and `input_fidelity`."""

    input_fidelity: str | None = None

    @property
    def model_name(self) -> str:
        # Edits default to OpenAI's current GPT image model whatever fields are given.
        return self.model if self.model is not None else DEFAULT_GPT_MODEL

    def resolve_edit(
        self, spec: ModelSpec, images: Sequence[ImageFile], mask: ImageFile | None
    ) -> ImageJob:
        """The job: the fields checked as for a generation, then the images by the model's edit
        rules. Decodes the images: call it off the event loop."""
        if self.style is not None:
            raise unknown_parameter("style")
        job = self.resolve(spec)
        fields = EditFields(
            prompt=self.prompt,
            n=self.n,
            size=self.size,
            quality=self.quality,
            input_fidelity=self.input_fidelity,
        )
        return replace(job, plan=edit_plan(spec, fields, images, mask))


class CreateVariationRequest(RequestBody):
    """A variation's fields besides its image."""

    model: str | None = None
    n: int | None = None
    size: str | None = None
    response_format: str | None = None
    user: str | None = None

    @property
    def model_name(self) -> str:
        return self.model if self.model is not None else DEFAULT_MODEL

    def resolve_variation(self, spec: ModelSpec, image: ImageFile) -> ImageJob:
        """The job of `n` variations of `image`. Decodes it: call it off the event loop."""
        plan = variation_plan(spec, image, self.n, self.size)
        response_format = self.response_format or "url"
        if response_format not in RESPONSE_FORMATS:
            raise invalid_value("response_format", response_format, RESPONSE_FORMATS)
        return ImageJob(plan=plan, seed=None, response_format=response_format, output=OutputPlan())


@dataclass(frozen=True)
class ImageUrl:
    """An image a JSON edit names, and the name its errors report."""

    param: str
    url: str


class ImageReference(BaseModel):
    """OpenAI's ImageRefParam: exactly one of `image_url` or `file_id`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    image_url: str | None = Field(default=None, max_length=MAX_IMAGE_URL_CHARS)
    file_id: str | None = None


def form_body(form: Form) -> dict[str, Any]:
    """A form's text fields typed as their JSON counterparts (multipart sends every value as
    text: numbers as digits, booleans as "true"/"false"), for the request models to check."""
    body: dict[str, Any] = {}
    for name, values in form.fields.items():
        if name in IMAGE_FIELDS or name == MASK_FIELD:
            raise InvalidRequestError(
                f"Invalid type for '{name}': expected a file, but got a text field instead.",
                param=name,
                code="invalid_type",
            )
        if len(values) > 1:
            raise InvalidRequestError(
                f"Invalid '{name}': the field is given {len(values)} times; give it once.",
                param=name,
                code="invalid_value",
            )
        body[name] = _typed(name, values[0])
    for name in form.files:
        if name not in IMAGE_FIELDS and name != MASK_FIELD:
            raise unknown_parameter(name)
    return body


def form_images(form: Form) -> tuple[list[ImageFile], ImageFile | None]:
    """The form's images in the order sent (each named as its errors will name it), and mask."""
    files = [data for name in IMAGE_FIELDS for data in form.files.get(name, [])]
    if len(files) > MAX_REQUEST_IMAGES:
        raise too_many_images(MAX_REQUEST_IMAGES, len(files))
    names = ["image"] if len(files) == 1 else [f"image[{index}]" for index in range(len(files))]
    images = [ImageFile(name, data) for name, data in zip(names, files, strict=True)]
    masks = form.files.get(MASK_FIELD, [])
    if len(masks) > 1:
        raise InvalidRequestError(
            "Invalid 'mask': send one mask; it applies to the first image.",
            param=MASK_FIELD,
            code="invalid_value",
        )
    return images, ImageFile(MASK_FIELD, masks[0]) if masks else None


def json_image_urls(body: dict[str, Any]) -> tuple[list[ImageUrl], ImageUrl | None]:
    """A JSON edit's `images` and `mask` URLs, taken out of `body`."""
    images = body.pop("images", None)
    mask = body.pop("mask", None)
    if "image" in body:
        raise InvalidRequestError(
            "Unknown parameter: 'image'. JSON edits name their images in 'images': "
            "[{'image_url': ...}].",
            param="image",
            code="unknown_parameter",
        )
    if images is None:
        raise InvalidRequestError(
            "Missing required parameter: 'images'.",
            param="images",
            code="missing_required_parameter",
        )
    if not isinstance(images, list):
        raise InvalidRequestError(
            "Invalid type for 'images': expected an array of image references.",
            param="images",
            code="invalid_type",
        )
    if not images:
        raise InvalidRequestError(
            "Invalid 'images': empty array. Expected an array with minimum length 1, but got an "
            "empty array instead.",
            param="images",
            code="empty_array",
        )
    if len(images) > MAX_REQUEST_IMAGES:
        raise too_many_images(MAX_REQUEST_IMAGES, len(images), "images")
    urls = [_image_url(item, f"images[{index}]") for index, item in enumerate(images)]
    return urls, _image_url(mask, "mask") if mask is not None else None


def _image_url(value: object, param: str) -> ImageUrl:
    if not isinstance(value, dict):
        raise InvalidRequestError(
            f"Invalid type for '{param}': expected an object with 'image_url'.",
            param=param,
            code="invalid_type",
        )
    try:
        reference = ImageReference.model_validate(value)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = f"{param}.{error['loc'][0]}" if error["loc"] else param
        if error["type"] == "extra_forbidden":
            raise unknown_parameter(field) from None
        raise InvalidRequestError(
            f"Invalid '{field}': {error['msg']}.", param=field, code="invalid_value"
        ) from None
    if reference.file_id is not None:
        raise InvalidRequestError(
            f"Invalid '{param}.file_id': this server has no Files API. Send the image as a "
            "base64 data URL in 'image_url', or upload it with multipart/form-data.",
            param=f"{param}.file_id",
            code="unsupported_parameter",
        )
    if reference.image_url is None:
        raise InvalidRequestError(
            f"Missing required parameter: '{param}.image_url'.",
            param=f"{param}.image_url",
            code="missing_required_parameter",
        )
    return ImageUrl(f"{param}.image_url", reference.image_url)


def _typed(name: str, value: str) -> object:
    if name in _INTEGER_FIELDS:
        try:
            return int(value)
        except ValueError:
            raise InvalidRequestError(
                f"Invalid type for '{name}': expected an integer, but got '{value}' instead.",
                param=name,
                code="invalid_type",
            ) from None
    if name in _BOOLEAN_FIELDS:
        try:
            return _BOOLEANS[value.strip().lower()]
        except KeyError:
            raise InvalidRequestError(
                f"Invalid type for '{name}': expected a boolean ('true' or 'false'), but got "
                f"'{value}' instead.",
                param=name,
                code="invalid_type",
            ) from None
    return value
