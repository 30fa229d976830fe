"""Key pools for the synthetic tasks, split into disjoint "train" and "eval" halves by construction.

A name is in the eval pool iff crc32(name) % 3 == 0 (about a third), else in the train pool. The rule is a
pure function of the string, so the split is the same on every machine and in every Python (no
PYTHONHASHSEED), and a model trained on `lemo data` rows has never seen an eval key. Variable names of the
variable-tracking task (five capital letters, as in RULER) follow the same rule.
"""

from __future__ import annotations

import random
import string
import zlib
from typing import Literal

Split = Literal["train", "eval"]
SPLITS = ("train", "eval")

# Common English first names (given names of the last century's US/UK birth lists), one word each.
_FIRST_NAMES = """
Aaron Abigail Adam Adrian Aidan Alan Albert Alec Alexander Alexis Alfred Alice Alicia Allison Amanda Amber
Amelia Amy Andrea Andrew Angela Anita Ann Anthony Antonio April Arthur Ashley Audrey Austin Barbara Barry
Beatrice Benjamin Bernard Beth Betty Beverly Bill Blake Bobby Bonnie Brandon Brenda Brian Bridget Brittany
Bruce Bryan Caleb Calvin Cameron Carl Carla Carlos Carmen Carol Caroline Carrie Catherine Cecilia Chad
Charles Charlotte Chelsea Cheryl Chloe Christian Christina Christopher Cindy Claire Clara Clarence Claude
Clifford Clinton Colin Connie Connor Craig Crystal Curtis Cynthia Daisy Dale Dana Daniel Danielle Darren
David Dawn Dean Deborah Denise Dennis Derek Diana Diane Dolores Dominic Donald Donna Doris Dorothy Douglas
Dylan Edgar Edith Edward Edwin Eileen Elaine Eleanor Elena Eli Elijah Ellen Eloise Elsie Emily Eric Erica
Erin Ernest Esther Ethan Eugene Eva Evan Evelyn Felicia Felix Fiona Florence Frances Francis Frank
Franklin Fred Gabriel Gail Gary Gavin Gemma Gene George Georgia Gerald Gilbert Gina Glen Gloria Gordon
Grace Graham Grant Gregory Gwen Hannah Harold Harriet Harvey Hazel Heather Hector Helen Henry Herbert
Holly Howard Hugh Ian Irene Iris Isaac Isabel Ivan Jack Jacob Jacqueline Jake James Jamie Jane Janet
Janice Jason Jasmine Jean Jeffrey Jenna Jennifer Jeremy Jerome Jesse Jessica Jill Joan Joanna Joel John
Jonathan Jordan Joseph Joshua Joy Joyce Judith Julia Julian Justin Karen Katherine Kathleen Keith Kelly
Kenneth Kevin Kimberly Kyle Laura Lauren Lawrence Leah Leo Leon Leonard Leslie Lillian Linda Lionel Lisa
Logan Lois Lorraine Louis Louise Lucas Lucy Luke Lydia Lynn Madeline Malcolm Marcus Margaret Maria Marian
Marilyn Mark Martha Martin Martina Marvin Matthew Maureen Maxwell Megan Melanie Melissa Melvin Michael
Michelle Miles Milton Miranda Molly Monica Morgan Nancy Naomi Natalie Nathan Neil Nelson Nicholas Nicole
Noah Nora Norman Oliver Olivia Oscar Owen Pamela Patricia Patrick Paul Paula Pauline Peggy Penelope Peter
Philip Phoebe Phyllis Quentin Rachel Ralph Randall Raymond Rebecca Regina Rhonda Richard Rita Robert Robin
Roger Ronald Rose Rosemary Ross Roy Ruby Russell Ruth Ryan Sabrina Samantha Samuel Sandra Sara Scott Sean
Sharon Sheila Shirley Sidney Simon Sophia Stanley Stella Stephanie Steven Stuart Susan Sylvia Tamara
Teresa Terry Theodore Thomas Timothy Tina Todd Tracy Travis Trevor Tyler Ursula Valerie Vanessa Vernon
Victor Victoria Vincent Violet Virginia Walter Wanda Warren Wayne Wendy Wesley Whitney Willard William
Yvonne Zachary Zoe
"""

_SURNAMES = """
Adams Allen Anderson Bailey Baker Barnes Bell Bennett Brooks Brown Butler Campbell Carter Clark Collins
Cook Cooper Cox Davis Edwards Evans Fisher Foster Garcia Gray Green Griffin Hall Harris Hayes Hill Howard
Hughes Jackson James Jenkins Johnson Jones Kelly King Lee Lewis Long Martin Miller Mitchell Moore Morgan
Morris Murphy Nelson Parker Perry Peterson Phillips Powell Price Reed Richardson Roberts Robinson Rogers
Ross Russell Sanders Scott Simmons Smith Stewart Sullivan Taylor Thomas Thompson Turner Walker Ward Watson
White Williams Wilson Wood Wright Young
"""
FIRST_NAMES: tuple[str, ...] = tuple(_FIRST_NAMES.split())
SURNAMES: tuple[str, ...] = tuple(_SURNAMES.split())


def in_eval_split(key: str) -> bool:
    """True iff `key` belongs to the eval pool (crc32 % 3 == 0); everything else is train."""
    return zlib.crc32(key.encode("utf-8")) % 3 == 0


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is unknown; use 'train' or 'eval'.")


def name_pool(split: Split) -> tuple[str, ...]:
    """The first names of one split, sorted."""
    _check_split(split)
    want_eval = split == "eval"
    return tuple(sorted(n for n in set(FIRST_NAMES) if in_eval_split(n) == want_eval))


def _surname_pool(split: Split) -> tuple[str, ...]:
    want_eval = split == "eval"
    return tuple(sorted(n for n in set(SURNAMES) if in_eval_split(n) == want_eval))


def sample_names(rng: random.Random, n: int, split: Split) -> list[str]:
    """`n` distinct names of `split`: first names while the pool lasts, "First Last" names beyond it.

    Two-word names still belong to one split only, because their first name does.
    """
    firsts = name_pool(split)
    if n <= len(firsts):
        return rng.sample(firsts, n)
    full = [f"{f} {s}" for f in firsts for s in _surname_pool(split)]
    if n > len(full):
        raise ValueError(f"{n} distinct keys asked; the {split} pool has {len(full)}. Ask for fewer keys.")
    return rng.sample(full, n)


def sample_variables(rng: random.Random, n: int, split: Split, length: int = 5) -> list[str]:
    """`n` distinct variable names of `length` capital letters (RULER's style), all of `split`."""
    _check_split(split)
    want_eval = split == "eval"
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        name = "".join(rng.choices(string.ascii_uppercase, k=length))
        if name not in seen and in_eval_split(name) == want_eval:
            seen.add(name)
            out.append(name)
    return out
