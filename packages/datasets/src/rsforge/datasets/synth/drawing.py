"""Drawing primitives of the synthetic scenes: textures, roads, buildings with shadows, fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

# Colours, RGB 0-255.
_LAND = ((160, 150, 112), (138, 146, 98), (170, 160, 128), (126, 136, 94))  # dry grass, meadow, sand, scrub
_SOIL = (152, 118, 84)
_WATER = (46, 80, 116)
_TREES = (44, 78, 40)
_ROAD = (124, 124, 120)
_MARKING = (206, 204, 192)
_ROOFS = ((198, 198, 202), (172, 86, 64), (112, 128, 160), (214, 204, 182), (140, 140, 138))
_ROOF_NAMES = ("white", "red", "blue", "beige", "grey")
_CROPS = ((96, 140, 62), (190, 176, 96), (122, 150, 70), (168, 132, 86))  # green, ripe, young, ploughed

# ------------------------------------------------------------------------------------------ drawing
def _bounds(k: int, size: int) -> int:
    """Pixel where grid row/column `k` (0..3) starts; pixel p lies in cell 3 * p // size."""
    return (k * size + 2) // 3


def _cell_box(cell: int, size: int) -> tuple[int, int, int, int]:
    row, col = divmod(cell, 3)
    return _bounds(row, size), _bounds(row + 1, size), _bounds(col, size), _bounds(col + 1, size)


def _noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth value noise, (size, size), about unit amplitude, with `cells` features across."""
    grid = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    t = (np.arange(size, dtype=np.float32) + 0.5) * (cells / size)
    i = np.minimum(t.astype(np.int64), cells - 1)
    f = t - i
    f = f * f * (3 - 2 * f)  # smoothstep: hides the grid's creases
    rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def _texture(
    rng: np.random.Generator,
    size: int,
    colour: tuple[int, int, int],
    low: float,
    mid: float,
    fine: float,
    mid_cells: int = 12,
) -> np.ndarray:
    """A material: a jittered base colour with large patches, mid-scale grain and pixel noise.
    Feature counts are per image, not per pixel, so a 256 px scene looks like an upscaled 64 px one
    with finer detail rather than a tiled one."""
    base = np.asarray(colour, np.float32) + rng.normal(0, 5, 3).astype(np.float32)
    lum = low * _noise(rng, size, 3) + mid * _noise(rng, size, mid_cells)
    lum += fine * rng.standard_normal((size, size), dtype=np.float32)
    return base + lum[..., None]


@dataclass
class _Road:
    vertical: bool
    lo: int  # first pixel row (horizontal) or column (vertical) of the strip
    hi: int
    band: int  # grid row (horizontal) or column (vertical) it runs along

    def mask(self, size: int, margin: int = 0) -> np.ndarray:
        m = np.zeros((size, size), bool)
        lo, hi = max(0, self.lo - margin), self.hi + margin
        if self.vertical:
            m[:, lo:hi] = True
        else:
            m[lo:hi, :] = True
        return m

    def cells(self) -> list[int]:
        return (
            [r * 3 + self.band for r in range(3)] if self.vertical else [self.band * 3 + c for c in range(3)]
        )


@dataclass
class _Building:
    y0: int
    x0: int
    y1: int
    x1: int
    colour: tuple[float, float, float]
    cell: int

    def footprint(self, size: int) -> np.ndarray:
        m = np.zeros((size, size), bool)
        m[self.y0 : self.y1, self.x0 : self.x1] = True
        return m


@dataclass
class _Rotated:
    """A building turned by `angle` (radians) about its centre; `corners` clockwise on screen."""

    cy: float
    cx: float
    half_len: float
    half_wid: float
    angle: float
    colour: tuple[float, float, float]
    cell: int

    def local(self, yy: np.ndarray, xx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel centres in the building's frame: along its length, across it."""
        c, s = np.cos(self.angle), np.sin(self.angle)
        return (xx - self.cx) * c + (yy - self.cy) * s, -(xx - self.cx) * s + (yy - self.cy) * c

    def mask(self, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        u, v = self.local(yy, xx)
        return (np.abs(u) <= self.half_len) & (np.abs(v) <= self.half_wid)

    def corners(self) -> list[float]:
        c, s = np.cos(self.angle), np.sin(self.angle)
        out = []
        for u, v in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            du, dv = u * self.half_len, v * self.half_wid
            out += [round(float(self.cx + du * c - dv * s), 1), round(float(self.cy + du * s + dv * c), 1)]
        return out


@dataclass
class _Field:
    """A crop field: its area, the rows ploughed across it, the crop colour."""

    mask: np.ndarray
    rows: np.ndarray
    colour: tuple[int, int, int]


@dataclass
class _Scene:
    roads: list[_Road] = field(default_factory=list)
    soil: list[np.ndarray] = field(default_factory=list)
    water: list[np.ndarray] = field(default_factory=list)
    trees: list[np.ndarray] = field(default_factory=list)
    buildings: list[_Building] = field(default_factory=list)
    rotated: list[_Rotated] = field(default_factory=list)  # the single-image scenes' turned buildings
    fields: list[_Field] = field(default_factory=list)

    def copy(self) -> _Scene:
        return _Scene(
            list(self.roads), list(self.soil), list(self.water), list(self.trees), list(self.buildings),
            list(self.rotated), list(self.fields),
        )  # fmt: skip


class _Canvas:
    """Draws scenes of one pair: the materials are shared by both dates, so unchanged ground is
    the same in A and B up to illumination and sensor noise."""

    def __init__(self, rng: np.random.Generator, size: int) -> None:
        self.size = size
        self.shadow = max(1, round(size / 32))  # sun in the top left: shadows fall bottom-right
        self.road_width = max(2, round(size * 0.06))
        land = _LAND[int(rng.integers(len(_LAND)))]
        self.land = _texture(rng, size, land, low=12, mid=5, fine=3)
        self.soil = _texture(rng, size, _SOIL, low=6, mid=6, fine=5)
        self.water = _texture(rng, size, _WATER, low=5, mid=2, fine=1.5)
        self.trees = _texture(rng, size, _TREES, low=6, mid=16, fine=5, mid_cells=24)  # crowns
        self.road = _texture(rng, size, _ROAD, low=4, mid=2, fine=3)
        self.roof = 4 * rng.standard_normal((size, size), dtype=np.float32)
        self.yy, self.xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5  # pixel centres

    def blob(self, rng: np.random.Generator, cy: float, cx: float, radius: float, lobes: int) -> np.ndarray:
        """An irregular patch: a union of ellipses around (cy, cx) with a noisy outline."""
        fld = np.full((self.size, self.size), -np.inf, np.float32)
        for _ in range(lobes):
            oy, ox = rng.normal(0, radius * 0.35, 2)
            ry, rx = radius * rng.uniform(0.5, 0.85, 2)
            fld = np.maximum(fld, 1 - ((self.yy - cy - oy) / ry) ** 2 - ((self.xx - cx - ox) / rx) ** 2)
        return fld + 0.3 * _noise(rng, self.size, 10) > 0

    def render(self, scene: _Scene, rng: np.random.Generator) -> np.ndarray:
        img = self.land.copy()
        for material, masks in (
            (self.soil, scene.soil),
            (self.water, scene.water),
            (self.trees, scene.trees),
        ):
            for m in masks:
                img[m] = material[m]
        for f in scene.fields:  # the land's texture, tinted with the crop colour
            crop = np.asarray(f.colour, np.float32) + 0.6 * (self.land - self.land.mean(axis=(0, 1)))
            crop[f.rows] *= 0.8
            img[f.mask] = crop[f.mask]
        for road in scene.roads:
            m = road.mask(self.size)
            img[m] = self.road[m]
            if self.road_width >= 8:  # lane markings only where a road is wide enough to show them
                img[self._marking(road)] = _MARKING
        d = self.shadow
        shadow = np.zeros((self.size, self.size), bool)
        roofs = np.zeros((self.size, self.size), bool)
        for b in scene.buildings:
            shadow[b.y0 + d : b.y1 + d, b.x0 + d : b.x1 + d] = True
            roofs[b.y0 : b.y1, b.x0 : b.x1] = True
        turned = [(r, r.mask(self.yy, self.xx)) for r in scene.rotated]
        for _, m in turned:
            shadow[d:, d:] |= m[:-d, :-d]
            roofs |= m
        img[shadow & ~roofs] *= 0.5
        for b in scene.buildings:
            roof = np.asarray(b.colour, np.float32) + self.roof[b.y0 : b.y1, b.x0 : b.x1, None]
            # a gable roof: the ridge runs along the long side, the half away from the sun is darker
            if b.x1 - b.x0 >= b.y1 - b.y0:
                roof[(b.y1 - b.y0) // 2 :] *= 0.84
            else:
                roof[:, (b.x1 - b.x0) // 2 :] *= 0.84
            img[b.y0 : b.y1, b.x0 : b.x1] = roof
        for r, m in turned:
            roof = np.asarray(r.colour, np.float32) + self.roof[..., None]
            roof[r.local(self.yy, self.xx)[1] > 0] *= 0.84  # the ridge runs along the length
            img[m] = roof[m]
        # the two dates differ in illumination and sensor noise even where nothing changed
        gain = 1 + rng.normal(0, 0.04) + rng.normal(0, 0.02, 3)
        img = img * gain.astype(np.float32) + rng.normal(0, 3, 3).astype(np.float32)
        img += rng.normal(0, 1.5, img.shape).astype(np.float32)
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)

    def _marking(self, road: _Road) -> np.ndarray:
        centre = (road.lo + road.hi) // 2
        half = self.road_width // 16  # a 1 px line, 3 px on roads of 16 px and more
        along = self.yy if road.vertical else self.xx
        across = self.xx if road.vertical else self.yy
        dash = (along // self.road_width).astype(np.int64) % 2 == 0
        return dash & (np.abs(across - 0.5 - centre) <= half)


def _save_png(array: np.ndarray, path: Path) -> None:
    # noisy scenes hardly compress: the fastest zlib level costs ~10% in size and halves the time
    Image.fromarray(array).save(path, format="PNG", compress_level=1)
