"""The vocabulary every condition shares: BODY_25 joints, GP-29 parsing labels, DensePose parts,
garment part values, garment categories and which categories a model variant renders.

One owner so that the derivation, the masks and the synthetic catalogue cannot drift apart: they
all name these values from here instead of writing numbers. ``infra.schema`` keeps its own
``CATEGORIES`` (infra may not import gpvton_core); a test checks the two are equal.
"""

from __future__ import annotations

from typing import Literal, get_args

# --- BODY_25 (OpenPose) ---------------------------------------------------------------------------
BODY_25 = ("Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
           "MidHip", "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye",
           "REar", "LEar", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel")


class Joint:
    """BODY_25 keypoint indices (R/L are the person's right/left)."""

    NOSE, NECK, R_SHOULDER, R_ELBOW, R_WRIST, L_SHOULDER, L_ELBOW, L_WRIST = range(8)
    MID_HIP, R_HIP, R_KNEE, R_ANKLE, L_HIP, L_KNEE, L_ANKLE = range(8, 15)
    R_EYE, L_EYE, R_EAR, L_EAR = range(15, 19)
    L_BIG_TOE, L_SMALL_TOE, L_HEEL, R_BIG_TOE, R_SMALL_TOE, R_HEEL = range(19, 25)


LEFT_ARM_JOINTS = (Joint.L_SHOULDER, Joint.L_ELBOW, Joint.L_WRIST)
RIGHT_ARM_JOINTS = (Joint.R_SHOULDER, Joint.R_ELBOW, Joint.R_WRIST)
LEFT_LEG_JOINTS = (Joint.L_HIP, Joint.L_KNEE, Joint.L_ANKLE)
RIGHT_LEG_JOINTS = (Joint.R_HIP, Joint.R_KNEE, Joint.R_ANKLE)
LEFT_FOOT_JOINTS = (Joint.L_BIG_TOE, Joint.L_SMALL_TOE, Joint.L_HEEL)
RIGHT_FOOT_JOINTS = (Joint.R_BIG_TOE, Joint.R_SMALL_TOE, Joint.R_HEEL)

# --- GP-29 person parsing (GP-VTON spec §8.1) ------------------------------------------------------
LABEL_NAMES = ("background", "hat", "hair", "glove", "glasses", "upper", "dresses", "coat",
               "socks", "left_pants", "right_pants", "neck", "scarf", "skirts", "face",
               "left_arm", "right_arm", "left_leg", "right_leg", "left_shoe", "right_shoe",
               "left_sleeve_upper", "right_sleeve_upper", "bag", "left_sleeve_dresses",
               "right_sleeve_dresses", "left_sleeve_coat", "right_sleeve_coat", "belt")
NUM_LABELS = len(LABEL_NAMES)


class Label:
    """GP-29 parsing label ids; each name is its :data:`LABEL_NAMES` entry in upper case."""

    BACKGROUND, HAT, HAIR, GLOVE, GLASSES, UPPER, DRESSES, COAT, SOCKS = range(9)
    LEFT_PANTS, RIGHT_PANTS, NECK, SCARF, SKIRTS, FACE, LEFT_ARM, RIGHT_ARM = range(9, 17)
    LEFT_LEG, RIGHT_LEG, LEFT_SHOE, RIGHT_SHOE = range(17, 21)
    LEFT_SLEEVE_UPPER, RIGHT_SLEEVE_UPPER, BAG, LEFT_SLEEVE_DRESSES, RIGHT_SLEEVE_DRESSES = range(21, 26)
    LEFT_SLEEVE_COAT, RIGHT_SLEEVE_COAT, BELT = range(26, 29)


# Garment torso labels → (torso, person's left sleeve, person's right sleeve).
SLEEVED = {Label.UPPER: (Label.UPPER, Label.LEFT_SLEEVE_UPPER, Label.RIGHT_SLEEVE_UPPER),
           Label.DRESSES: (Label.DRESSES, Label.LEFT_SLEEVE_DRESSES, Label.RIGHT_SLEEVE_DRESSES),
           Label.COAT: (Label.COAT, Label.LEFT_SLEEVE_COAT, Label.RIGHT_SLEEVE_COAT)}

# --- garment part map (``parts_png``) ---------------------------------------------------------------
# 0 background; left/right are the wearer's (a front-view product photo shows the left on the image right).
PART_LEFT, PART_MIDDLE, PART_RIGHT = 1, 2, 3
GARMENT_PARTS = (PART_LEFT, PART_MIDDLE, PART_RIGHT)

# The person's parsing labels of a worn garment's (left, middle, right) parts, per category.
WORN_PART_LABELS = {
    "upper": (Label.LEFT_SLEEVE_UPPER, Label.UPPER, Label.RIGHT_SLEEVE_UPPER),
    "dresses": (Label.LEFT_SLEEVE_DRESSES, Label.DRESSES, Label.RIGHT_SLEEVE_DRESSES),
    "lower": (Label.LEFT_PANTS, Label.SKIRTS, Label.RIGHT_PANTS),
}

# --- DensePose surface parts (official numbering; R/L are the person's) ------------------------------
NUM_PARTS = 25  # 0 = background, 1..24


class Part:
    """DensePose part indices (1/2 torso back/front, 3/4 right/left hand, 5/6 left/right foot,
    7..14 upper and lower legs back/front, 15..22 upper and lower arms, 23/24 head right/left).
    Arm parts are named for a person facing the camera: INNER lies on the side towards the torso,
    OUTER on the outer side."""

    TORSO_BACK, TORSO_FRONT, RIGHT_HAND, LEFT_HAND, LEFT_FOOT, RIGHT_FOOT = range(1, 7)
    RIGHT_UPPER_LEG_BACK, LEFT_UPPER_LEG_BACK, RIGHT_UPPER_LEG_FRONT, LEFT_UPPER_LEG_FRONT = range(7, 11)
    RIGHT_LOWER_LEG_BACK, LEFT_LOWER_LEG_BACK, RIGHT_LOWER_LEG_FRONT, LEFT_LOWER_LEG_FRONT = range(11, 15)
    LEFT_UPPER_ARM_INNER, RIGHT_UPPER_ARM_INNER, LEFT_UPPER_ARM_OUTER, RIGHT_UPPER_ARM_OUTER = range(15, 19)
    LEFT_LOWER_ARM_INNER, RIGHT_LOWER_ARM_INNER, LEFT_LOWER_ARM_OUTER, RIGHT_LOWER_ARM_OUTER = range(19, 23)
    HEAD_RIGHT, HEAD_LEFT = 23, 24


# --- garment categories and model variants ---------------------------------------------------------
Category = Literal["upper", "lower", "dresses"]
CATEGORIES: tuple[str, ...] = get_args(Category)
Variant = Literal["vitonhd", "dresscode"]
VARIANTS: tuple[str, ...] = get_args(Variant)


def variant_categories(variant: str) -> tuple[str, ...]:
    """The garment categories a model variant renders and trains on: VITON-HD's warp only learnt
    upper garments; Dress Code takes all three."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; use one of {VARIANTS}")
    return ("upper",) if variant == "vitonhd" else CATEGORIES
