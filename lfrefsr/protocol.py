"""The x8 protocol (SPEC "Conventions"): crop HR to a multiple of the scale, bicubic-downsample with antialiasing.

All functions take float tensors in [0, 1] shaped (..., C, H, W) and work for any scale >= 2 and any image size.
LR images are quantised to the store's integer dtype like a real capture; ``quantize`` does that step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lfrefsr.errors import InputError


def check_scale(scale: int, hr_hw: tuple[int, int], path=None) -> None:
    """A scale below 2, or one that leaves no LR pixel, is refused with one line."""
    if int(scale) != scale or scale < 2:
        raise InputError(f"scale must be an integer >= 2, got {scale}", path)
    height, width = hr_hw
    if scale > min(height, width):
        raise InputError(f"scale {scale} is larger than the image ({height}x{width})", path)


def crop_to_multiple(hr, scale: int):
    """Crop the last two axes to a multiple of ``scale`` (top-left anchored). Works on numpy and torch."""
    height, width = hr.shape[-2], hr.shape[-1]
    return hr[..., : height - height % scale, : width - width % scale]


def _as_batch(image: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    lead = tuple(image.shape[:-3])
    return image.reshape(-1, *image.shape[-3:]), lead  # (N, C, H, W)


def downsample(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """LR = antialiased bicubic downsampling of the cropped HR by ``scale`` (MATLAB ``imresize`` equivalent)."""
    hr = crop_to_multiple(hr, scale)
    batch, lead = _as_batch(hr)
    height, width = batch.shape[-2:]
    lr = F.interpolate(
        batch, size=(height // scale, width // scale), mode="bicubic", antialias=True, align_corners=False
    )
    return lr.reshape(*lead, *lr.shape[-3:])


def camera_downsample(hr: torch.Tensor, scale: int, psf: float = 0.0) -> torch.Tensor:
    """The LR camera's image of HR (..., C, H, W): a Gaussian lens PSF of sigma ``psf`` LR pixels (``psf * scale``
    HR pixels, replicate borders) before the protocol's decimation. ``psf`` 0 is the protocol itself."""
    if psf <= 0:
        return downsample(hr, scale)
    return downsample(lens(crop_to_multiple(hr, scale), scale, psf), scale)


def lens(hr: torch.Tensor, scale: int, psf: float) -> torch.Tensor:
    """HR (..., C, H, W) through the LR camera's Gaussian lens PSF of sigma ``psf`` LR pixels (``psf * scale`` HR
    pixels, replicate borders), at HR: ``camera_downsample`` before the decimation."""
    from lfrefsr.filters import gaussian_kernel, separable_blur

    batch, lead = _as_batch(hr)
    blurred = separable_blur(batch, gaussian_kernel(psf * scale))
    return blurred.reshape(*lead, *blurred.shape[-3:])


def upsample(lr: torch.Tensor, scale: int, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Bicubic upsampling by ``scale`` (or to ``size``), clamped to [0, 1]."""
    batch, lead = _as_batch(lr)
    height, width = batch.shape[-2:]
    size = size or (height * scale, width * scale)
    hr = F.interpolate(batch, size=size, mode="bicubic", align_corners=False).clamp_(0.0, 1.0)
    return hr.reshape(*lead, *hr.shape[-3:])


def blur(hr: torch.Tensor, scale: int, psf: float = 0.0) -> torch.Tensor:
    """The reference as the LR views see it: the LR camera's image (``camera_downsample``; the protocol's for
    ``psf`` 0) upsampled back (``_blurry``)."""
    return upsample(camera_downsample(hr, scale, psf), scale, size=tuple(crop_to_multiple(hr, scale).shape[-2:]))


def luma(image: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of RGB (..., 3, H, W) -> (..., 1, H, W), on the image's own scale (``metrics.rgb_to_y`` is the
    studio-range Y the scores use)."""
    red, green, blue = image.unbind(dim=-3)
    return (0.299 * red + 0.587 * green + 0.114 * blue).unsqueeze(-3)


def max_value(dtype) -> int:
    return int(np.iinfo(np.dtype(dtype)).max)


def to_float(array, dtype=None) -> torch.Tensor:
    """Integer image array (numpy or torch) -> float32 tensor in [0, 1]."""
    dtype = np.dtype(dtype or (array.dtype if isinstance(array, np.ndarray) else np.uint8))
    tensor = torch.as_tensor(np.asarray(array).astype(np.float32) if isinstance(array, np.ndarray) else array)
    return tensor.float() / max_value(dtype)


def quantize(image: torch.Tensor, dtype=np.uint8) -> np.ndarray:
    """Float tensor in [0, 1] -> integer numpy array of ``dtype`` (round half to even, clipped)."""
    peak = max_value(dtype)
    return (image.detach().float().clamp(0.0, 1.0) * peak).round().cpu().numpy().astype(dtype)


def stored_lr(hr: torch.Tensor, scale: int, dtype=np.uint8) -> torch.Tensor:
    """Float HR (..., C, H, W) -> the float LR image as a store would hold it: downsampled, quantised to ``dtype``."""
    return to_float(quantize(downsample(hr, scale), dtype), dtype)


def make_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    """Integer HR array (..., C, H, W) -> integer LR array of the same dtype, by the protocol."""
    return quantize(downsample(to_float(hr), scale), hr.dtype)


# ----------------------------------------------------------------------------------------------------------------
# Degraded LR views (``eval --degrade SPEC``): the protocol's LR image as a real camera would give it
# ----------------------------------------------------------------------------------------------------------------

DEGRADE_KEYS = ("psf", "gain", "noise", "jpeg", "h264")


@dataclass(frozen=True)
class Degradation:
    """What a real LR camera adds to the protocol's LR view, applied in the order a camera applies it: a Gaussian
    lens PSF on the HR scene (``psf``: sigma in LR pixels, i.e. ``psf * scale`` HR pixels), the protocol's
    decimation, a per-channel ``gain`` (R, G, B), Gaussian sensor ``noise`` (sigma in 1/255), quantisation to the
    store's integer type, then compression: ``jpeg`` (quality 1-100, each view) or ``h264`` (CRF 0-51, the views or
    frames as one stream, in store order). Noise is seeded (``seed``, and the view's position in the sequence).

    ``Degradation.parse("noise=3,jpeg=85")``, ``"psf=gauss:0.6"``, ``"h264=28"``, ``"gain=1.1,0.95,1.0"``."""

    psf: float = 0.0
    gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    noise: float = 0.0
    jpeg: int | None = None
    h264: int | None = None
    seed: int = 0

    @classmethod
    def parse(cls, spec: str, seed: int = 0) -> Degradation:
        """``KEY=VALUE`` items separated by commas (``gain`` takes three comma-separated numbers); ValueError with
        one line naming the bad item."""
        values: dict = {}
        items = [item.strip() for item in str(spec).split(",")]
        while items:
            item = items.pop(0)
            key, sep, value = item.partition("=")
            key = key.strip().lower()
            if not sep or key not in DEGRADE_KEYS:
                raise ValueError(f"{item!r} is not KEY=VALUE with KEY one of {', '.join(DEGRADE_KEYS)}")
            if key in values:
                raise ValueError(f"{key} given twice")
            try:
                if key == "psf":
                    kind, _, sigma = value.partition(":")
                    if kind.strip().lower() != "gauss" or not sigma:
                        raise ValueError
                    values["psf"] = float(sigma)
                    if not 0 < values["psf"] <= 4:
                        raise ValueError
                elif key == "gain":
                    gains = (value, items.pop(0), items.pop(0)) if len(items) >= 2 else ()
                    values["gain"] = tuple(float(g) for g in gains)
                    if len(values["gain"]) != 3 or not all(0 < g <= 4 for g in values["gain"]):
                        raise ValueError
                elif key == "noise":
                    values["noise"] = float(value)
                    if not 0 <= values["noise"] <= 64:
                        raise ValueError
                else:
                    values[key] = int(value)
                    if not (1 <= values[key] <= 100 if key == "jpeg" else 0 <= values[key] <= 51):
                        raise ValueError
            except (ValueError, IndexError):
                ranges = {"psf": "gauss:F with 0 < F <= 4 (sigma in LR pixels)", "gain": "R,G,B each in (0, 4]",
                          "noise": "a sigma in 1/255 from 0 to 64", "jpeg": "a quality from 1 to 100",
                          "h264": "a CRF from 0 to 51"}
                raise ValueError(f"{key}={value}: {key} takes {ranges[key]}") from None
        if "jpeg" in values and "h264" in values:
            raise ValueError("jpeg and h264 are two codecs for the same views: give one")
        return cls(seed=seed, **values)

    def as_json(self) -> dict:
        """The non-default settings (and the seed), as recorded in the eval JSON."""
        default = Degradation()
        out = {key: getattr(self, key) for key in DEGRADE_KEYS if getattr(self, key) != getattr(default, key)}
        return {**{k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}, "seed": self.seed}

    def lr_views(self, hrs: list[np.ndarray], scale: int) -> list[np.ndarray]:
        """Integer HR views (C, H, W), in store order -> their degraded integer LR views of the same dtype."""
        lrs = [self._camera(hr, scale, position) for position, hr in enumerate(hrs)]
        if self.jpeg is not None:
            lrs = [jpeg(lr, self.jpeg) for lr in lrs]
        if self.h264 is not None:
            lrs = _h264(lrs, self.h264)
        return lrs

    def _camera(self, hr: np.ndarray, scale: int, position: int) -> np.ndarray:
        """Lens, decimation, gain, noise and quantisation of one view."""
        lr = camera_downsample(to_float(hr), scale, self.psf)  # (C, h, w)
        lr = lr * torch.tensor(self.gain[: lr.shape[0]], dtype=lr.dtype).view(-1, 1, 1)
        if self.noise:
            rng = np.random.default_rng([self.seed, position])
            lr = lr + torch.from_numpy(rng.standard_normal(lr.shape, dtype=np.float32)) * (self.noise / 255)
        return quantize(lr, hr.dtype)


def _to_8bit(image: np.ndarray) -> np.ndarray:
    return image if image.dtype == np.uint8 else quantize(to_float(image), np.uint8)


def _from_8bit(image: np.ndarray, dtype) -> np.ndarray:
    return image if np.dtype(dtype) == np.uint8 else quantize(to_float(image), dtype)


def jpeg(lr: np.ndarray, quality: int) -> np.ndarray:
    """(C, h, w) integer -> the same after a JPEG round trip at ``quality`` (8-bit, 4:2:0, as cameras write)."""
    import cv2

    rgb = np.ascontiguousarray(_to_8bit(lr).transpose(1, 2, 0))  # (h, w, C)
    ok, data = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise InputError(f"JPEG encoding failed at quality {quality}")
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]  # (h, w, 3) RGB
    return _from_8bit(np.ascontiguousarray(decoded.transpose(2, 0, 1)), lr.dtype)


def through_jpeg(images: torch.Tensor, quality: int) -> torch.Tensor:
    """Float images (N, 3, h, w) in [0, 1] -> the same after an 8-bit JPEG round trip at ``quality`` (``jpeg``): what
    a camera that writes JPEG would have stored. The 8 x 8 blocks (16 x 16 for the subsampled colour) sit on each
    image's own pixel grid, so an image must be the whole LR view, or a crop of it at a multiple of 16 pixels."""
    return torch.stack([to_float(jpeg(quantize(image), quality)) for image in images]).to(images)


# BT.601 RGB -> YCbCr (JPEG's colour transform; its offsets are left out: averaging keeps a constant, so they cancel
# on the way back to RGB)
_YCBCR = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))


def subsample_chroma(images: torch.Tensor) -> torch.Tensor:
    """Float RGB images (N, 3, h, w) with their colour difference (Cb, Cr) averaged over 2 x 2 pixels, as JPEG's
    4:2:0 keeps it, and the luma untouched -> (N, 3, h, w). Differentiable: ``jpeg_with_gradient``'s surrogate."""
    height, width = images.shape[-2:]
    to_ycbcr = torch.tensor(_YCBCR, dtype=images.dtype, device=images.device)  # (3, 3)
    ycbcr = torch.einsum("ij,njhw->nihw", to_ycbcr, images)  # (N, 3, h, w)
    chroma = F.avg_pool2d(ycbcr[:, 1:], 2, ceil_mode=True)  # (N, 2, ceil(h/2), ceil(w/2))
    # brought back as libjpeg's decoder does ("fancy" upsampling: weights 3/4 and 1/4, i.e. bilinear)
    chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False)[..., :height, :width]
    return torch.einsum("ij,njhw->nihw", torch.linalg.inv(to_ycbcr), torch.cat([ycbcr[:, :1], chroma], 1))


def jpeg_with_gradient(images: torch.Tensor, quality: int) -> torch.Tensor:
    """``through_jpeg``'s values (N, 3, h, w) with a gradient for fitting through the codec: that of its 4:2:0 colour
    (``subsample_chroma``), the quantisation passed straight through. Why the colour: a straight-through gradient alone
    asks a fit to explain colour detail the written view no longer has (hci-backgammon with noise=3,jpeg=85, refsr
    with the refined disparity: 27.10 dB straight through, 27.16 with this)."""
    coded = through_jpeg(images.detach().clamp(0, 1), quality)
    if not images.requires_grad:
        return coded
    surrogate = subsample_chroma(images)
    return surrogate + (coded - surrogate.detach())


def _h264(lrs: list[np.ndarray], crf: int) -> list[np.ndarray]:
    """The views as one H.264 stream (libx264, yuv420p, CRF ``crf``), encoded and decoded in memory. Odd sizes are
    padded by edge replication to even (4:2:0 needs it) and cropped back."""
    import io

    import av

    _, height, width = lrs[0].shape
    padded = [np.pad(_to_8bit(lr).transpose(1, 2, 0), ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
              for lr in lrs]  # each (h', w', 3)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height = padded[0].shape[1], padded[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(int(crf)), "preset": "medium"}
        for frame in padded:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    buffer.seek(0)
    with av.open(buffer, mode="r") as container:
        decoded = [frame.to_ndarray(format="rgb24")[:height, :width] for frame in container.decode(video=0)]
    if len(decoded) != len(lrs):
        raise InputError(f"H.264 round trip returned {len(decoded)} of {len(lrs)} views")
    return [_from_8bit(np.ascontiguousarray(frame.transpose(2, 0, 1)), lr.dtype)  # (H, W, 3) -> (3, H, W)
            for frame, lr in zip(decoded, lrs, strict=True)]
