"""CLEVR-like synthetic scenes rendered headless with pybullet's tiny renderer (CPU, ``p.DIRECT``).

A scene is 3-8 primitive objects (cube, sphere, cylinder; optional capsule) of 8 distinct colours and two sizes
resting on a grey plane, seen by a random camera (azimuth 0-360°, elevation, distance, field of view and look-at
jitter drawn from :class:`SceneConfig`). Every render gives RGB, an exact instance mask (pybullet segmentation),
metric depth (z-buffer -> ``far*near/(far-(far-near)*z)``, distance along the optical axis) and, per object,
its 2D box (from the mask) and its 3D box in the camera frame (OpenCV axes: x right, y down, z forward) with the
intrinsics ``K``.

Visibility rule (which objects count)
-------------------------------------
For each object: ``pixels`` = its pixels in the segmentation; ``visible_fraction`` = pixels / pixels of the same
object rendered alone from the same camera (only rendered when the fraction could be below the threshold).

- ``pixels == 0`` (entirely hidden behind other objects): the object is *not* in the scene's annotations and is
  not counted; nobody can see it, so counts stay exact.
- ``pixels >= min_visible_pixels`` and ``visible_fraction >= min_visible_fraction``: visible, annotated, counted.
- anything in between (a sliver, a mostly-hidden object) would make a count ambiguous: the camera is re-sampled
  (``camera_tries`` times), then the whole layout is re-sampled.

Cameras whose view cuts any object at the image border are re-sampled too, so every annotated object is whole in
the frame (its unoccluded silhouette lies inside the image). Rendering is deterministic for a seed: scene ``i`` of
split ``s`` uses ``numpy.random.default_rng([seed, crc32(s), i])`` whatever the number of workers, and two splits
draw from different streams (train and test never share a scene; :func:`scene_fingerprint` lets you check).
"""

from __future__ import annotations

import hashlib
import math
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np

from ...typed import ConfigError

# CLEVR-like palette (sRGB 0-255); the names are what questions use.
COLORS: dict[str, tuple[int, int, int]] = {
    "gray": (110, 110, 110),
    "red": (200, 30, 30),
    "blue": (40, 80, 220),
    "green": (30, 150, 40),
    "brown": (130, 80, 30),
    "purple": (140, 50, 200),
    "cyan": (40, 210, 210),
    "yellow": (240, 220, 40),
}
SHAPES = ("cube", "sphere", "cylinder", "capsule")
SIZES: dict[str, float] = {"small": 0.45, "large": 0.8}  # overall extent (metres)
PLANE_RGB = (185, 185, 180)
NEAR, FAR = 0.1, 60.0


@dataclass
class SceneConfig:
    width: int = 256
    height: int = 256
    min_objects: int = 3
    max_objects: int = 8
    shapes: tuple = ("cube", "sphere", "cylinder")
    colors: tuple = tuple(COLORS)
    sizes: tuple = ("small", "large")
    dup_prob: float = 0.35  # chance an object copies the colour+shape of an earlier one (counts above 1)
    arena_radius: float = 2.6  # objects' centres lie in this disk (metres)
    min_gap: float = 0.12  # free space between objects' bounding circles (metres)
    cam_distance: tuple = (6.0, 8.0)
    cam_elevation_deg: tuple = (28.0, 55.0)
    fov_deg: tuple = (42.0, 50.0)
    target_jitter: float = 0.4
    min_visible_pixels: int = 60
    min_visible_fraction: float = 0.35
    border_margin: int = 1  # pixels: annotated objects must project inside the frame by this much
    shadow: bool = False
    camera_tries: int = 6
    layout_tries: int = 50

    @classmethod
    def from_dict(cls, d: dict | None) -> SceneConfig:
        d = dict(d or {})
        for k in ("shapes", "colors", "sizes", "cam_distance", "cam_elevation_deg", "fov_deg"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(split.encode()), int(index)])


def shape_dims(shape: str, extent: float) -> tuple[float, float, float]:
    """(width x, length y, height z) of the object's axis-aligned box in its own frame."""
    if shape == "capsule":  # lying-free capsule standing up: diameter = extent/2, height = extent
        return extent * 0.5, extent * 0.5, extent
    return extent, extent, extent


def _bound_radius(shape: str, extent: float) -> float:
    w, length, _ = shape_dims(shape, extent)
    return 0.5 * math.hypot(w, length) if shape == "cube" else 0.5 * max(w, length)


@dataclass
class ObjectSpec:
    shape: str
    color: str
    size: str
    x: float
    y: float
    yaw: float

    @property
    def category(self) -> str:
        return f"{self.color} {self.shape}"

    @property
    def extent(self) -> float:
        return SIZES[self.size]


@dataclass
class Camera:
    eye: list
    target: list
    fov: float
    width: int
    height: int
    view: list = field(default_factory=list)
    proj: list = field(default_factory=list)

    def world_to_cam(self) -> tuple[np.ndarray, np.ndarray]:
        """(R, t) with x_cam = R @ x_world + t in OpenCV axes (x right, y down, z forward)."""
        V = np.asarray(self.view, dtype=np.float64).reshape(4, 4).T  # pybullet matrices are column-major
        flip = np.diag([1.0, -1.0, -1.0])
        return flip @ V[:3, :3], flip @ V[:3, 3]

    def K(self) -> np.ndarray:
        f = 0.5 * self.height / math.tan(math.radians(self.fov) / 2)
        return np.array([[f, 0, self.width / 2], [0, f, self.height / 2], [0, 0, 1.0]])


def sample_layout(rng: np.random.Generator, cfg: SceneConfig) -> list[ObjectSpec]:
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    objs: list[ObjectSpec] = []
    for _ in range(n):
        if objs and rng.random() < cfg.dup_prob:
            src = objs[int(rng.integers(len(objs)))]
            shape, color = src.shape, src.color
        else:
            shape = str(rng.choice(cfg.shapes))
            color = str(rng.choice(cfg.colors))
        place(rng, cfg, objs, shape, color, str(rng.choice(cfg.sizes)))
    return objs


def place(
    rng: np.random.Generator, cfg: SceneConfig, objs: list[ObjectSpec], shape: str, color: str, size: str
) -> bool:
    """Append an object at a random free spot of the arena (clear of ``objs`` by ``min_gap``); False when 60 tries
    found none."""
    r = _bound_radius(shape, SIZES[size])
    for _try in range(60):
        rad = cfg.arena_radius * math.sqrt(rng.random())
        ang = rng.random() * 2 * math.pi
        x, y = rad * math.cos(ang), rad * math.sin(ang)
        if all(math.hypot(x - o.x, y - o.y) >= r + _bound_radius(o.shape, o.extent) + cfg.min_gap for o in objs):
            objs.append(ObjectSpec(shape, color, size, x, y, float(rng.random() * math.pi)))
            return True
    return False


def sample_camera(rng: np.random.Generator, cfg: SceneConfig) -> Camera:
    import pybullet as p

    az = rng.random() * 2 * math.pi
    el = math.radians(rng.uniform(*cfg.cam_elevation_deg))
    d = rng.uniform(*cfg.cam_distance)
    fov = rng.uniform(*cfg.fov_deg)
    tx, ty = rng.uniform(-cfg.target_jitter, cfg.target_jitter, size=2)
    target = [float(tx), float(ty), 0.0]
    eye = [target[0] + d * math.cos(el) * math.cos(az), target[1] + d * math.cos(el) * math.sin(az), d * math.sin(el)]
    view = p.computeViewMatrix(eye, target, [0, 0, 1])
    proj = p.computeProjectionMatrixFOV(fov, cfg.width / cfg.height, NEAR, FAR)
    return Camera(
        eye=[float(v) for v in eye],
        target=target,
        fov=float(fov),
        width=cfg.width,
        height=cfg.height,
        view=list(view),
        proj=list(proj),
    )


def object_box3d(o: ObjectSpec, cam: Camera) -> dict:
    """Omni3D-style 3D box in the camera frame: centre, dimensions [w, h, l], R_cam (object -> camera), 8 corners.

    Object frame: x = width (along yaw), y = height pointing down (world -z), z = length; corners are ordered
    by the sign pattern (x, y, z) in itertools.product([-1, 1], repeat=3) order.
    """
    w, length, h = shape_dims(o.shape, o.extent)
    c, s = math.cos(o.yaw), math.sin(o.yaw)
    # columns: object x, y, z axes expressed in world coordinates
    R_wo = np.array([[c, 0.0, -s], [s, 0.0, c], [0.0, -1.0, 0.0]])
    R_cw, t_cw = cam.world_to_cam()
    centre_w = np.array([o.x, o.y, h / 2])
    R_cam = R_cw @ R_wo
    centre = R_cw @ centre_w + t_cw
    dims = np.array([w, h, length])
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    corners = centre + (signs * dims / 2) @ R_cam.T
    return {
        "center_cam": centre.tolist(),
        "dimensions": dims.tolist(),
        "R_cam": R_cam.tolist(),
        "bbox3D_cam": corners.tolist(),
    }


def project(points_cam: np.ndarray, K: np.ndarray) -> np.ndarray:
    pts = np.asarray(points_cam, dtype=np.float64)
    uvw = pts @ K.T
    return uvw[:, :2] / uvw[:, 2:3]


class SceneRenderer:
    """Owns one pybullet DIRECT client; ``render(rng)`` returns one accepted scene."""

    def __init__(self, cfg: SceneConfig | None = None):
        import pybullet as p

        self.p = p
        self.cfg = cfg or SceneConfig()
        self.client = p.connect(p.DIRECT)
        self._bodies: list[int] = []

    def close(self) -> None:
        try:
            self.p.disconnect(self.client)
        except Exception:  # noqa: BLE001 - already gone
            pass

    # -- scene construction -------------------------------------------------------------------------------
    def _build(self, objs: list[ObjectSpec]) -> None:
        p, c = self.p, self.client
        p.resetSimulation(physicsClientId=c)
        plane_rgba = [v / 255 for v in PLANE_RGB] + [1]
        pv = p.createVisualShape(p.GEOM_BOX, halfExtents=[30, 30, 0.01], rgbaColor=plane_rgba, physicsClientId=c)
        self.plane = p.createMultiBody(0, -1, pv, [0, 0, -0.01], physicsClientId=c)
        self._bodies = []
        for o in objs:
            rgba = [v / 255 for v in COLORS[o.color]] + [1]
            w, length, h = shape_dims(o.shape, o.extent)
            if o.shape == "cube":
                v = p.createVisualShape(
                    p.GEOM_BOX, halfExtents=[w / 2, length / 2, h / 2], rgbaColor=rgba, physicsClientId=c
                )
            elif o.shape == "sphere":
                v = p.createVisualShape(p.GEOM_SPHERE, radius=w / 2, rgbaColor=rgba, physicsClientId=c)
            elif o.shape == "cylinder":
                v = p.createVisualShape(p.GEOM_CYLINDER, radius=w / 2, length=h, rgbaColor=rgba, physicsClientId=c)
            elif o.shape == "capsule":
                v = p.createVisualShape(p.GEOM_CAPSULE, radius=w / 2, length=h - w, rgbaColor=rgba, physicsClientId=c)
            else:
                raise ConfigError(f"unknown shape {o.shape!r}; valid: {SHAPES}")
            quat = p.getQuaternionFromEuler([0, 0, o.yaw])
            self._bodies.append(p.createMultiBody(0, -1, v, [o.x, o.y, h / 2], quat, physicsClientId=c))

    def _render(self, cam: Camera, shadow: bool | None = None):
        p = self.p
        w, h, rgba, zbuf, seg = p.getCameraImage(
            cam.width,
            cam.height,
            cam.view,
            cam.proj,
            renderer=p.ER_TINY_RENDERER,
            shadow=int(self.cfg.shadow if shadow is None else shadow),
            lightDirection=[0.6, -0.4, 1.0],
            lightAmbientCoeff=0.55,
            lightDiffuseCoeff=0.5,
            lightSpecularCoeff=0.05,
            physicsClientId=self.client,
        )
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(h, w, 4)[:, :, :3]
        seg = np.asarray(seg, dtype=np.int64).reshape(h, w)
        z = np.asarray(zbuf, dtype=np.float64).reshape(h, w)
        depth = FAR * NEAR / (FAR - (FAR - NEAR) * z)
        return rgb.copy(), seg, depth

    def _solo_pixels(self, k: int, cam: Camera) -> int:
        """Pixels of body k rendered with every other body made invisible (alpha 0), no shadow."""
        p, c = self.p, self.client
        others = [b for b in self._bodies + [self.plane] if b != self._bodies[k]]
        for b in others:
            p.changeVisualShape(b, -1, rgbaColor=[0, 0, 0, 0], physicsClientId=c)
        try:
            _, seg, _ = self._render(cam, shadow=False)
        finally:
            for b in others:
                p.changeVisualShape(b, -1, rgbaColor=self._rgba[b], physicsClientId=c)
        return int((seg == self._bodies[k]).sum())

    # -- one scene ------------------------------------------------------------------------------------------
    def render(self, rng: np.random.Generator, layout=None) -> dict:
        """Sample layouts/cameras until the visibility rule holds; returns a dict with arrays and annotations.
        ``layout(rng, cfg) -> [ObjectSpec]`` replaces :func:`sample_layout` (scenes built around a chosen object)."""
        cfg = self.cfg
        rejected = {"marginal_object": 0, "out_of_frame": 0, "no_visible_object": 0}
        for _layout in range(cfg.layout_tries):
            objs = (layout or sample_layout)(rng, cfg)
            self._build(objs)
            self._rgba = {
                b: list(self.p.getVisualShapeData(b, physicsClientId=self.client)[0][7])
                for b in self._bodies + [self.plane]
            }
            for _cam in range(cfg.camera_tries):
                cam = sample_camera(rng, cfg)
                result = self._try_camera(objs, cam, rejected)
                if result is not None:
                    result["rejections"] = dict(rejected)
                    return result
        raise RuntimeError(f"no acceptable scene after {cfg.layout_tries} layouts (rejections: {rejected})")

    def _try_camera(self, objs: list[ObjectSpec], cam: Camera, rejected: dict) -> dict | None:
        cfg = self.cfg
        K = cam.K()
        boxes = [object_box3d(o, cam) for o in objs]
        m = cfg.border_margin
        # every object (even one that ends up hidden) must be whole in the frame
        for b in boxes:
            uv = project(np.asarray(b["bbox3D_cam"]), K)
            if (
                uv[:, 0].min() < m
                or uv[:, 1].min() < m
                or uv[:, 0].max() > cam.width - m
                or uv[:, 1].max() > cam.height - m
                or min(c[2] for c in b["bbox3D_cam"]) <= NEAR
            ):
                rejected["out_of_frame"] += 1
                return None
        rgb, seg, depth = self._render(cam)
        records = []
        for k, (_o, b) in enumerate(zip(objs, boxes)):
            px = int((seg == self._bodies[k]).sum())
            if px == 0:
                records.append(None)  # entirely hidden: not annotated, not counted
                continue
            uv = project(np.asarray(b["bbox3D_cam"]), K)
            hull_bound = float(np.ptp(uv[:, 0]) * np.ptp(uv[:, 1]))  # >= unoccluded silhouette area
            if px >= cfg.min_visible_fraction * hull_bound:
                frac = None  # cannot be below the threshold; solo render skipped
                solo = None
            else:
                solo = self._solo_pixels(k, cam)
                frac = px / max(solo, 1)
            if px < cfg.min_visible_pixels or (frac is not None and frac < cfg.min_visible_fraction):
                rejected["marginal_object"] += 1
                return None
            records.append((px, frac, solo))
        if all(r is None for r in records):
            rejected["no_visible_object"] += 1
            return None
        # instance mask: 0 background, i+1 for the i-th *annotated* object
        mask = np.zeros(seg.shape, dtype=np.uint8)
        objects, hidden = [], []
        for k, (o, b, r) in enumerate(zip(objs, boxes, records)):
            base = {
                "shape": o.shape,
                "color": o.color,
                "size": o.size,
                "category": o.category,
                "position_world": [o.x, o.y, shape_dims(o.shape, o.extent)[2] / 2],
                "yaw": o.yaw,
                "extent": o.extent,
            }
            if r is None:
                hidden.append(base)
                continue
            px, frac, solo = r
            inst = len(objects) + 1
            sel = seg == self._bodies[k]
            mask[sel] = inst
            ys, xs = np.nonzero(sel)
            x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
            objects.append(
                {
                    **base,
                    "instance_id": inst,
                    "pixels": px,
                    "visible_fraction": None if frac is None else round(frac, 4),
                    "unoccluded_pixels": solo,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],  # COCO xywh, pixel edges
                    "box3d": b,
                }
            )
        return {
            "rgb": rgb,
            "mask": mask,
            "depth": depth,
            "objects": objects,
            "hidden": hidden,
            "camera": {
                "eye": cam.eye,
                "target": cam.target,
                "fov_deg": cam.fov,
                "width": cam.width,
                "height": cam.height,
                "K": K.tolist(),
                "near": NEAR,
                "far": FAR,
            },
        }


def scene_fingerprint(scene: dict) -> str:
    """Hash of the layout and camera (rounded), for train/test disjointness checks."""
    objs = sorted(
        (o["category"], o["size"], round(o["position_world"][0], 3), round(o["position_world"][1], 3))
        for o in scene["objects"] + scene.get("hidden", [])
    )
    cam = scene["camera"]
    key = repr((objs, [round(v, 3) for v in cam["eye"]], [round(v, 3) for v in cam["target"]]))
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def config_dict(cfg: SceneConfig) -> dict:
    return asdict(cfg)
