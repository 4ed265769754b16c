"""Data sources: real photographs and synthetic layered scenes with exact ground truth."""

from lfrefsr.data.photos import load_photos
from lfrefsr.data.synthetic import LayeredScene, make_lfvideo, make_lightfield, make_video

__all__ = ["LayeredScene", "load_photos", "make_lfvideo", "make_lightfield", "make_video"]
