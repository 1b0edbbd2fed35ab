"""The embedded dataset: procedural 3-D faces (and hands and cats) whose structure and appearance are known
exactly.

A head is a union of ellipsoids (cranium, jaw, nose, nose wings, ears) carrying a texture drawn in head
coordinates (eyes, brows, lips, nostrils, beard ...), a clipped ellipsoid shell of hair, and a neck and
shoulders in front of a gradient background. Every pixel casts a ray through one pinhole camera; the
nearest surfaces are composited with analytic soft edges (so 64 px images come out anti-aliased) and
lit with a Lambert term on the true surface normals.

The 68 iBUG landmarks are 3-D points on the face surface: identity shape and expression blendshapes move
them in the head's (X, Y) plane, their depth Z is the surface's, and the jaw contour is the frontal
outline of the cranium and jaw. They are rotated by the head pose and projected with the same camera
that casts the rays, and the texture is drawn from the same landmark curves, so ``render`` returns the
exact landmarks of the image it draws.

Yaw and self-occlusion. The renderer draws any yaw in [-90, 90] (``RENDER_YAW``; at 90 the face is in profile
and the far eye is hidden by the head); the embedded data sets sample |yaw| <= 60, as they always have. Two
landmark conventions (``occlusion=``): "none", the default and what the data sets hold, returns the 3-D points
as they project, hidden ones included; "profile" follows 300W-LP / 3DDFA: a hidden contour point (0-16) slides
along its horizontal slice of the skull to the visible silhouette, every other point stays at its projected 3-D
position, and ``landmark_visibility`` marks the hidden ones (a depth test against the skin surfaces, so it comes
from the geometry, not from the pose); boundary maps then drop an eye or brow curve whose points are mostly hidden.

Conventions. Head frame: X to the image right (the subject's left), Y up, Z towards the camera; one unit
is half the head width. The camera sits at (0, 0, CAMERA_DISTANCE) looking down -Z. Pixel (row i, col j)
has its centre at (x=j, y=i). Pose: yaw > 0 turns the face to the image right, pitch > 0 looks up, roll > 0
tilts the head counter-clockwise in the image.

Appearance (per identity) and structure (per image) are batched dataclasses of tensors; ``render`` takes
one of each (a batch of 1 broadcasts), so an identity can be drawn under any structure: the true target of
a manipulation. Everything is deterministic from a ``torch.Generator``.

Beside the faces, two more subjects are drawn the same way, through the same camera, shading, background
and identity split: hands (``hands``: 21 ``hand21`` keypoints at the joints; flexion, spread and wrist
rotation as structure) and cats (``cats``: 9 ``cat9`` keypoints; head pose, ears, eyes and mouth as
structure). ``subjects`` holds the three behind one interface (``FACES``, ``HANDS``, ``CATS``).

Modules, bottom up (each imports only those before it): ``sampling`` (batched factors, shared samplers, the
identity split) and ``camera`` (the pinhole camera, rotations, ellipsoids) -> ``shading`` (rays, hits,
Lambert shading, soft-edged layers composited by depth, background) -> ``factors`` (the face's Appearance,
Structure and their sampling) -> ``geometry`` (head ellipsoids, landmarks, pose) -> ``raster`` (hair, body,
face features, ``render``) -> ``hands``, ``cats`` -> ``subjects`` -> ``faceset`` (rendered sets). This package
re-exports their public names, so ``syn.render`` (the faces') and ``from afvae.data.synthetic import render``
both work. It loads a module on the first use of one of its names (PEP 562), so that ``python -m
afvae.data.synthetic --help`` answers without importing torch.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the modules the names below live in, for type checkers and the import-graph test
    from afvae.data.synthetic import (camera, cats, faceset, factors, geometry, hands, raster,  # noqa: F401
                                      sampling, subjects)

_HOME = {  # public name -> the module that defines it
    **dict.fromkeys(("Factors", "TEST_FRACTION", "identity_generator", "held_out_identities"), "sampling"),
    **dict.fromkeys(("CAMERA_DISTANCE", "ZOOM", "CENTRE_ROW", "Camera"), "camera"),
    **dict.fromkeys(("EXPRESSIONS", "HAIR_STYLES", "SHAPE_FACTORS", "COLOUR_FIELDS", "SHAPE_FIELDS",
                     "APPEARANCE_FIELDS", "Appearance", "Structure", "AppearanceBatch", "StructureBatch", "RENDER_YAW",
                     "appearance_columns", "structure_columns", "sample_appearance", "sample_structure",
                     "sample_identities"), "factors"),
    **dict.fromkeys(("MIRROR", "NOSE_TILT", "FACE_SURFACES", "head_rotation", "head_geometry", "face_xy",
                     "face_points", "landmarks", "OCCLUSIONS", "landmark_visibility"), "geometry"),
    **dict.fromkeys(("SIZES", "FEATURE_RES", "FEATURE_SUPERSAMPLE", "render"), "raster"),
    **dict.fromkeys(("DIGITS", "HAND_SHAPE", "HandAppearance", "HandStructure", "sample_hand_appearance",
                     "sample_hand_structure", "sample_hand_identities"), "hands"),
    **dict.fromkeys(("CAT_PATTERNS", "CAT_SHAPE", "CatAppearance", "CatStructure", "sample_cat_appearance",
                     "sample_cat_structure", "sample_cat_identities"), "cats"),
    **dict.fromkeys(("Subject", "FACES", "HANDS", "CATS", "SUBJECTS"), "subjects"),
    **dict.fromkeys(("FaceSet", "render_faces", "make_faces"), "faceset"),
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` and return it (cached here, so this runs once per name)."""
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})
