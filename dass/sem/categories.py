"""The ten NFFA-Europe SEM image categories.

Category ids are the folder names of the NFFA-Europe SEM dataset (Aversa et al.,
Sci. Data 5, 180172, 2018); display names are for people.

Examples
--------
>>> from dass.sem.categories import CATEGORY_IDS, display_name
>>> len(CATEGORY_IDS)
10
>>> display_name("MEMS_devices_and_electrodes")
'MEMS devices and electrodes'
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    """One SEM image category.

    Attributes
    ----------
    id : str
        Folder name in the NFFA dataset, used as the stable identifier.
    name : str
        Readable display name.
    description : str
        One line on what images of this category show.
    """

    id: str
    name: str
    description: str


CATEGORIES: tuple[Category, ...] = (
    Category("Biological", "Biological", "Cells, tissues and other biological samples."),
    Category("Fibres", "Fibres", "Long fibres and strands, woven or loose."),
    Category(
        "Films_Coated_Surface",
        "Films and coated surfaces",
        "Thin films and coatings, often with texture or cracks.",
    ),
    Category(
        "MEMS_devices_and_electrodes",
        "MEMS devices and electrodes",
        "Micro-electro-mechanical structures, combs, pads and electrodes.",
    ),
    Category("Nanowires", "Nanowires", "Thin elongated wires or rods."),
    Category("Particles", "Particles", "Separate particles on a substrate."),
    Category(
        "Patterned_surface",
        "Patterned surfaces",
        "Regular lithographic patterns: gratings, dot or pillar arrays.",
    ),
    Category("Porous_Sponge", "Porous sponge", "Porous, foam- or sponge-like materials."),
    Category("Powder", "Powder", "Dense agglomerates of small grains."),
    Category("Tips", "Tips", "Probe tips, cones and pyramids (AFM/STM tips)."),
)

CATEGORY_IDS: tuple[str, ...] = tuple(c.id for c in CATEGORIES)

_BY_ID = {c.id: c for c in CATEGORIES}


def category(category_id: str) -> Category:
    """Return the :class:`Category` with id `category_id`.

    Parameters
    ----------
    category_id : str
        One of :data:`CATEGORY_IDS` (the NFFA folder names, case-sensitive).

    Returns
    -------
    Category

    Raises
    ------
    ValueError
        If `category_id` is unknown; the message lists the valid ids.

    Examples
    --------
    >>> category("Porous_Sponge").name
    'Porous sponge'
    """
    try:
        return _BY_ID[category_id]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown SEM category {category_id!r}; use one of: {', '.join(CATEGORY_IDS)}"
        ) from None


def display_name(category_id: str) -> str:
    """Return the readable name of a category id.

    Examples
    --------
    >>> display_name("Films_Coated_Surface")
    'Films and coated surfaces'
    """
    return category(category_id).name
