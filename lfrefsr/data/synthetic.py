"""Layered planar scenes with exact ground truth: light fields, video and light-field video.

A scene is a background layer (full coverage) plus K foreground layers. Layer ``i`` has a photo texture, a binary
analytic alpha shape in its texture coordinates (ellipse, rotated rectangle or superellipse), a disparity ``d_i``
(pixels per grid step; layers are sorted by disparity, background smallest, largest in front) and an affine motion
over time. A layer may be slanted: its disparity varies linearly over the layer, ``d_i(q) = d_i + g_i . q``. Texture
point ``q`` of layer ``i`` (0 at the layer's centre) appears in view ``(t, u, v)`` at image position

    p = A_i(t) q + b_i(t) + d_i(q) * (-(v - v0), -(u - u0))       (HCI: I_ref(x, y) = I_uv(x - d(v-v0), y - d(u-u0)))

with ``(u0, v0)`` the scene's ``origin`` view; the map stays affine per layer and view, ``(A_i + c g_i^T) q + ...`` with
``c`` the parallax direction above. Everything is analytic, so flow and occlusion are exact. Flows follow
``lfrefsr.warp``: flow ``(fx, fy)`` at target pixel ``(x, y)`` points at reference pixel ``(x + fx, y + fy)``.
Geometry is computed in float64, colours in float32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lfrefsr.data.photos import load_photos
from lfrefsr.protocol import quantize
from lfrefsr.warp import pixel_grid, sample

View = tuple[float, float, float]  # (t, u, v)
_EDGE_TOLERANCE = 1e-4  # pixels: a reference position this far outside the image still counts as inside


class LayeredScene:
    """A random layered planar scene of ``height`` x ``width`` pixels, fully determined by ``seed``.

    ``photos``: list of (3, H, W) tensors, a folder or ``"skimage"`` (default). ``n_layers``: foreground layers
    (default random 2..5). ``max_disparity``: disparities lie in [-max_disparity, max_disparity] (integers if
    ``integer_disparity``). ``motion``: 1.0 gives up to ~3 px/frame translation, ~1 deg/frame rotation and ~1 %/frame
    scale per layer. ``brightness``: per-view gain in [1 - b, 1 + b] and offset in [-b/2, b/2] (0 = off).
    ``origin``: the grid position (u0, v0) where the layers sit at their drawn positions. ``slant``: each layer's
    disparity changes by up to this much (pixels per grid step) across the shorter image side, in a random direction
    (0 = fronto-parallel layers). ``repeat``: probability that a layer's texture is a periodic tiling of a small photo
    crop (repeated patterns, as on real boards, fabrics and facades). ``thin``: probability that a foreground layer is
    a thin bar or wedge, 3..10 px across and 0.4..1.0 of the shorter side long (wires, branches, fences, the HCI
    stratified scenes), where flow and occlusion are hardest. ``comb``: probability that a thin layer is a comb, 4..12
    parallel teeth of that shape (hci-backgammon's periodic wedges, where a match can land on the wrong tooth). All
    four draw from their own random streams, so a scene with ``slant=0, repeat=0, thin=0, comb=0`` is the same as
    before they existed.
    """

    def __init__(self, height, width, *, photos=None, n_layers=None, max_disparity=3.0, motion=0.0,
                 brightness=0.0, integer_disparity=False, seed=0, origin=(0, 0), slant=0.0, repeat=0.0,
                 thin=0.0, comb=0.0):  # fmt: skip
        rng = np.random.default_rng(seed)
        if photos is None or isinstance(photos, (str, Path)):
            photos = load_photos(photos)
        self.height, self.width, self.seed = int(height), int(width), int(seed)
        self.brightness, self.origin = float(brightness), (float(origin[0]), float(origin[1]))
        n_layers = int(rng.integers(2, 6)) if n_layers is None else int(n_layers)
        count = n_layers + 1  # L = background + foreground layers, back to front
        if integer_disparity:
            values = np.arange(-int(max_disparity), int(max_disparity) + 1)
            disparity = rng.choice(values, size=count, replace=count > len(values)).astype(np.float64)
        else:
            disparity = rng.uniform(-max_disparity, max_disparity, size=count)
        self.disparities = torch.from_numpy(np.sort(disparity))  # (L,), ties: later layer in front

        # Textures: random crops of random photos, rescaled onto a canvas with a margin around the view.
        margin = max(height, width) // 4
        canvas = (height + 2 * margin, width + 2 * margin)
        self.textures = torch.stack([_texture(photos[rng.integers(len(photos))], canvas, rng) for _ in range(count)])
        self._texture_centre = torch.tensor([(canvas[1] - 1) / 2, (canvas[0] - 1) / 2], dtype=torch.float64)

        # Shapes in texture coordinates: semi-axes, orientation, exponent (2 ellipse, inf rectangle, else superellipse).
        short = min(height, width)
        self.semi_axes = torch.from_numpy(rng.uniform(0.08, 0.3, size=(count, 2)) * short)  # (L, 2)
        self.orientation = torch.from_numpy(rng.uniform(0, np.pi, size=count))  # (L,)
        kind = rng.integers(0, 3, size=count)  # 0 ellipse, 1 rectangle, 2 superellipse
        exponent = np.where(kind == 0, 2.0, np.where(kind == 1, np.inf, rng.uniform(0.7, 4.0, size=count)))
        self.exponent = torch.from_numpy(exponent)  # (L,)

        # Motion: b_i(t) = centre_i + velocity_i t, A_i(t) = exp(zoom_i t) R(spin_i t).
        centre = rng.uniform(0.1, 0.9, size=(count, 2)) * [width - 1, height - 1]
        centre[0] = [(width - 1) / 2, (height - 1) / 2]  # background centred on the view
        self.centre = torch.from_numpy(centre)  # (L, 2), (x, y)
        direction = rng.uniform(0, 2 * np.pi, size=count)
        speed = 3.0 * motion * rng.uniform(0.3, 1.0, size=count)
        self.velocity = torch.from_numpy(np.stack([np.cos(direction), np.sin(direction)], 1) * speed[:, None])
        self.spin = torch.from_numpy(np.radians(rng.uniform(-1, 1, size=count)) * motion)  # (L,) rad/frame
        self.zoom = torch.from_numpy(rng.uniform(-0.01, 0.01, size=count) * motion)  # (L,) log-scale/frame
        self._grid = pixel_grid(height, width, dtype=torch.float64)  # (2, H, W)

        self._draw_features(photos, canvas, slant=slant, repeat=repeat, thin=thin, comb=comb)

    def _draw_features(self, photos, canvas: tuple[int, int], *, slant: float, repeat: float, thin: float,
                       comb: float) -> None:
        """Slant, repeated textures, thin layers and combs, over the layers drawn by ``__init__``."""
        count, short = len(self.disparities), min(self.height, self.width)
        # Slant and repetition come from a second stream: adding them leaves every existing seed's scene unchanged.
        extra = np.random.default_rng([self.seed, 1])
        angle = extra.uniform(0, 2 * np.pi, size=count)
        magnitude = extra.uniform(0.0, float(slant), size=count) / short  # disparity change per texel
        self.slope = torch.from_numpy(np.stack([np.cos(angle), np.sin(angle)], 1) * magnitude[:, None])  # (L, 2)
        for i in range(count):
            if extra.random() < repeat:
                self.textures[i] = _tiled_texture(photos[extra.integers(len(photos))], canvas, extra)
        # (L,): a triangle, full width at one end, a point at the other
        self.wedge = torch.zeros(count, dtype=torch.bool)
        thin_layers = []
        for i in range(1, count):  # foreground layers only
            if extra.random() < thin:
                thin_layers.append(i)
                self.semi_axes[i] = torch.tensor([extra.uniform(0.2, 0.5) * short, extra.uniform(1.5, 5.0)])
                self.exponent[i] = np.inf
                self.wedge[i] = bool(extra.random() < 0.5)
        # combs: thin layers repeated across their width with a period, over a limited extent (0 = not a comb)
        teeth = np.random.default_rng([self.seed, 2])
        self.comb_period = torch.zeros(count, dtype=torch.float64)  # (L,) texture pixels between teeth
        self.comb_extent = torch.zeros(count, dtype=torch.float64)  # (L,) half-width of the whole comb
        for i in thin_layers:
            if teeth.random() < comb:
                self.comb_period[i] = float(self.semi_axes[i, 1]) * teeth.uniform(2.5, 6.0)
                self.comb_extent[i] = self.comb_period[i] * int(teeth.integers(4, 13)) / 2

    # ----------------------------------------------------------------------------------------------- geometry
    def _pose(self, view: View) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-layer affine texture -> image map of ``view``: A (L, 2, 2), b (L, 2); p = A q + b."""
        t, u, v = (float(x) for x in view)
        angle, scale = self.spin * t, torch.exp(self.zoom * t)  # each (L,)
        cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
        matrix = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (L, 2, 2)
        parallax = torch.tensor([-(v - self.origin[1]), -(u - self.origin[0])], dtype=torch.float64)  # (2,)
        offset = self.centre + self.velocity * t + self.disparities[:, None] * parallax  # (L, 2)
        matrix = matrix + parallax[None, :, None] * self.slope[:, None, :]  # (L, 2, 2): + c g_i^T, the slant
        return matrix, offset

    def _to_texture(self, view: View, points: torch.Tensor) -> torch.Tensor:
        """Image positions (2, H, W) of ``view`` -> every layer's texture coordinates (L, 2, H, W)."""
        matrix, offset = self._pose(view)
        return torch.einsum("lij,ljhw->lihw", torch.linalg.inv(matrix), points[None] - offset[:, :, None, None])

    def _coverage(self, coords: torch.Tensor) -> torch.Tensor:
        """Exact binary alpha of every layer at texture coordinates (L, 2, H, W) -> bool (L, H, W)."""
        cos, sin = torch.cos(self.orientation)[:, None, None], torch.sin(self.orientation)[:, None, None]  # (L,1,1)
        signed = (cos * coords[:, 0] + sin * coords[:, 1]) / self.semi_axes[:, 0, None, None]  # (L, H, W)
        along = signed.abs()
        sideways = -sin * coords[:, 0] + cos * coords[:, 1]  # (L, H, W) texture pixels across the shape
        period = self.comb_period[:, None, None]  # (L, 1, 1)
        tooth = torch.remainder(sideways + period / 2, period.clamp_min(1e-9)) - period / 2  # within the nearest tooth
        outside_comb = (period > 0) & (sideways.abs() > self.comb_extent[:, None, None])
        across = torch.where(period > 0, tooth, sideways).abs() / self.semi_axes[:, 1, None, None]
        # a wedge narrows linearly from the full width at along = +1 to nothing at along = -1
        across = torch.where(self.wedge[:, None, None], across * 2 / (1 + signed).clamp_min(1e-9), across)
        power = self.exponent[:, None, None]  # (L, 1, 1)
        curve = along ** power.clamp(max=1e3) + across ** power.clamp(max=1e3) <= 1.0
        inside = torch.where(torch.isinf(power), torch.maximum(along, across) <= 1.0, curve)  # (L, H, W)
        inside &= ~outside_comb
        inside[0] = True  # the background covers everything
        return inside

    def _top(self, view: View, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-most layer index (H, W) at image positions (2, H, W) of ``view``, and all texture coords (L, 2, H, W)."""
        coords = self._to_texture(view, points)
        index = torch.arange(len(self.disparities))[:, None, None]  # (L, 1, 1)
        return (self._coverage(coords) * index).amax(0), coords

    def _correspond(self, target: View, reference: View) -> tuple[torch.Tensor, torch.Tensor]:
        """Top layer (H, W) of each target pixel and its exact position (2, H, W) in the reference view."""
        top, coords = self._top(target, self._grid)  # (H, W), (L, 2, H, W)
        own = coords.gather(0, top[None, None].expand(1, 2, -1, -1))[0]  # (2, H, W) coords in the pixel's layer
        matrix, offset = self._pose(reference)
        position = torch.einsum("hwij,jhw->ihw", matrix[top], own) + offset[top].permute(2, 0, 1)  # (2, H, W)
        return top, position

    # ------------------------------------------------------------------------------------------------ public
    def render(self, t=0, u=0, v=0) -> torch.Tensor:
        """The HR view ``(t, u, v)``: float32 (3, H, W) in [0, 1]."""
        top, coords = self._top((t, u, v), self._grid)  # (H, W), (L, 2, H, W)
        texels = coords + self._texture_centre[None, :, None, None]  # (L, 2, H, W) canvas pixel coordinates
        colours = sample(self.textures, texels, padding_mode="reflection")  # (L, 3, H, W)
        hr = colours.gather(0, top[None, None].expand(1, 3, -1, -1))[0]  # (3, H, W)
        gain, offset = self._gain((t, u, v))
        return (hr * gain + offset).clamp_(0.0, 1.0) if self.brightness else hr.clamp_(0.0, 1.0)

    def flow(self, target: View = (0, 0, 0), reference: View = (0, 0, 0)) -> torch.Tensor:
        """Exact flow from view ``target`` to view ``reference``: float32 (2, H, W), channel 0 = x."""
        return self.ground_truth(target, reference)[0]

    def occlusion(self, target: View, reference: View) -> torch.Tensor:
        """bool (H, W), True where the target pixel is hidden in (or falls outside) the reference view."""
        return self.ground_truth(target, reference)[1]

    def ground_truth(self, target: View, reference: View) -> tuple[torch.Tensor, torch.Tensor]:
        """``flow`` (2, H, W) and ``occlusion`` (H, W) from ``target`` to ``reference`` in one pass."""
        top, position = self._correspond(target, reference)
        top_ref, _ = self._top(reference, position)  # evaluated at the exact, non-integer positions
        eps = _EDGE_TOLERANCE
        outside = (position[0] < -eps) | (position[0] > self.width - 1 + eps)
        outside |= (position[1] < -eps) | (position[1] > self.height - 1 + eps)
        return (position - self._grid).float(), (top_ref != top) | outside

    def disparity(self, view: View = (0, 0, 0)) -> torch.Tensor:
        """Disparity of the top-most layer at every pixel of ``view``: float32 (H, W)."""
        top, coords = self._top(view, self._grid)  # (H, W), (L, 2, H, W)
        own = coords.gather(0, top[None, None].expand(1, 2, -1, -1))[0]  # (2, H, W) coords in the pixel's layer
        return (self.disparities[top] + torch.einsum("hwi,ihw->hw", self.slope[top], own)).float()

    def _gain(self, view: View) -> tuple[float, float]:
        """Deterministic brightness gain and offset of one view (independent of call order)."""
        key = [self.seed, *(int(round(float(x) * 1000)) + 2**31 for x in view)]
        rng = np.random.default_rng(key)
        return 1.0 + rng.uniform(-self.brightness, self.brightness), rng.uniform(-0.5, 0.5) * self.brightness


def _texture(photo: torch.Tensor, size: tuple[int, int], rng: np.random.Generator) -> torch.Tensor:
    """A random crop of ``photo`` (3, Hp, Wp), zoomed by 0.6..1.6 photo pixels per texel, resized to ``size``."""
    height, width = size
    zoom = min(rng.uniform(0.6, 1.6), photo.shape[1] / height, photo.shape[2] / width)
    crop_h, crop_w = max(int(round(height * zoom)), 1), max(int(round(width * zoom)), 1)
    y0, x0 = rng.integers(0, photo.shape[1] - crop_h + 1), rng.integers(0, photo.shape[2] - crop_w + 1)
    crop = photo[None, :, y0 : y0 + crop_h, x0 : x0 + crop_w]  # (1, 3, h, w)
    texture = F.interpolate(crop, size=size, mode="bilinear", antialias=True, align_corners=False)[0]  # (3, H, W)
    return texture.flip(-1).clamp(0, 1) if rng.random() < 0.5 else texture.clamp(0, 1)


def _tiled_texture(photo: torch.Tensor, size: tuple[int, int], rng: np.random.Generator) -> torch.Tensor:
    """A periodic texture (3, H, W): a random 12..48-pixel crop of ``photo`` tiled over ``size``."""
    tile_h, tile_w = (min(int(rng.integers(12, 49)), side) for side in photo.shape[1:])
    y0, x0 = rng.integers(0, photo.shape[1] - tile_h + 1), rng.integers(0, photo.shape[2] - tile_w + 1)
    tile = photo[:, y0 : y0 + tile_h, x0 : x0 + tile_w]  # (3, th, tw)
    reps = (-(-size[0] // tile_h), -(-size[1] // tile_w))
    return tile.repeat(1, *reps)[:, : size[0], : size[1]].clamp(0, 1).contiguous()  # (3, H, W)


def _grid_shape(grid) -> tuple[int, int]:
    return (int(grid), int(grid)) if np.isscalar(grid) else (int(grid[0]), int(grid[1]))


def _views(scene: LayeredScene, views: list[View], reference_of) -> dict:
    """Render ``views`` and their ground truth towards ``reference_of(view)`` (None: zero flow, no occlusion)."""
    height, width = scene.height, scene.width
    hr = np.empty((len(views), 3, height, width), np.uint8)  # (N, 3, H, W)
    flow = np.zeros((len(views), 2, height, width), np.float32)  # (N, 2, H, W)
    occlusion = np.zeros((len(views), height, width), bool)  # (N, H, W)
    for n, view in enumerate(views):
        hr[n] = quantize(scene.render(*view))
        reference = reference_of(view)
        if reference is not None:
            flow_n, occlusion_n = scene.ground_truth(view, reference)
            flow[n], occlusion[n] = flow_n.numpy(), occlusion_n.numpy()
    return {"hr": hr, "flow": flow, "occlusion": occlusion}


def make_lightfield(grid=8, size=(128, 128), *, ref=(0, 0), seed=0, **scene_kw) -> dict:
    """A light field: ``hr`` uint8 (U, V, 3, H, W), ``flow`` float32 (U, V, 2, H, W) from each view to ``ref``,
    ``occlusion`` bool (U, V, H, W), ``scene``. ``grid``: int or (rows, cols)."""
    rows, cols = _grid_shape(grid)
    scene = LayeredScene(*size, seed=seed, origin=ref, **scene_kw)
    views = [(0, u, v) for u in range(rows) for v in range(cols)]
    out = _views(scene, views, lambda view: (0, *ref))
    out = {key: value.reshape(rows, cols, *value.shape[1:]) for key, value in out.items()}  # (N, ...) -> (U, V, ...)
    return {**out, "scene": scene}


def make_video(frames=5, size=(128, 128), *, seed=0, **kw) -> dict:
    """A video (one view, moving layers; ``motion`` defaults to 1.0): ``hr`` uint8 (T, 3, H, W), ``flow_prev``
    float32 (T, 2, H, W) from frame t to frame t-1 (frame 0: zeros), ``occlusion_prev`` bool (T, H, W), ``scene``."""
    kw.setdefault("motion", 1.0)
    scene = LayeredScene(*size, seed=seed, **kw)
    views = [(t, 0, 0) for t in range(frames)]
    out = _views(scene, views, lambda view: (view[0] - 1, 0, 0) if view[0] > 0 else None)
    return {"hr": out["hr"], "flow_prev": out["flow"], "occlusion_prev": out["occlusion"], "scene": scene}


def make_lfvideo(frames=3, grid=4, size=(64, 64), *, ref=(0, 0), seed=0, **kw) -> dict:
    """A light-field video (moving layers; ``motion`` defaults to 1.0): ``hr`` uint8 (T, U, V, 3, H, W), ``flow``
    float32 (T, U, V, 2, H, W) to the same time step's ``ref`` view, ``occlusion`` bool (T, U, V, H, W), ``scene``."""
    kw.setdefault("motion", 1.0)
    rows, cols = _grid_shape(grid)
    scene = LayeredScene(*size, seed=seed, origin=ref, **kw)
    views = [(t, u, v) for t in range(frames) for u in range(rows) for v in range(cols)]
    out = _views(scene, views, lambda view: (view[0], *ref))
    out = {key: value.reshape(frames, rows, cols, *value.shape[1:]) for key, value in out.items()}  # (T, U, V, ...)
    return {**out, "scene": scene}


def lightfield_store(path: str | Path, grid: int, size: int, *, seed: int = 0, scale: int = 8):
    """A synthetic ``grid`` x ``grid`` light field of ``size`` x ``size`` views (``LayeredScene``, disparity up to 1
    px per view) written straight into a new store at ``path``, LR by the x8 protocol (rendering only; no PNG
    round trip). -> the opened ``Store``. ``lfrefsr bench`` and ``benchmarks/pipeline.py`` reconstruct it."""
    from lfrefsr import protocol
    from lfrefsr.axes import Kind
    from lfrefsr.io.store import Store

    scene = LayeredScene(size, size, seed=seed, max_disparity=1.0)
    store = Store.create(path, kind=Kind.LF, view_shape=(grid, grid), shape_hr=(size, size), scale=scale,
                         dtype=np.uint8, ref=(0, 0), hr_known=np.ones((grid, grid), bool), source="synthetic")
    for u in range(grid):
        for v in range(grid):
            hr = quantize(scene.render(0, u, v))  # (3, H, W) uint8
            store.write("hr", (u, v), hr)
            store.write("lr", (u, v), protocol.make_lr(hr, scale))
    return store
