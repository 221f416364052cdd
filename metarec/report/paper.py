"""The published numbers our tables stand beside, and the project's stated goals."""

from __future__ import annotations

# MeLU (Lee et al., KDD 2019), Table 2, MovieLens-1M: MAE / nDCG@1 / nDCG@3 per scenario.
_MELU_TABLE2 = {
    "PPR": {"warm": (0.1820, 0.9796, 0.9831), "new_user": (1.0748, 0.8299, 0.8468),
            "new_item": (1.2441, 0.7289, 0.7632), "new_user_item": (1.2596, 0.7292, 0.7634)},
    "Wide&Deep": {"warm": (0.9047, 0.9090, 0.9117), "new_user": (1.0694, 0.8559, 0.8639),
                  "new_item": (1.2655, 0.7420, 0.7721), "new_user_item": (1.3114, 0.7680, 0.7874)},
    "MeLU-1": {"warm": (0.7661, 0.8866, 0.8904), "new_user": (0.7884, 0.8799, 0.8810),
               "new_item": (0.9361, 0.7715, 0.7990), "new_user_item": (0.9299, 0.7760, 0.8011)},
    "MeLU-5": {"warm": (0.7567, 0.8870, 0.8919), "new_user": (0.7854, 0.8803, 0.8812),
               "new_item": (0.9275, 0.7697, 0.8005), "new_user_item": (0.9235, 0.7752, 0.8008)},
}  # fmt: skip
# By dataset (data.name), "<method> (paper)" -> scenario -> metric -> value.
PAPER = {
    "melu-ml1m": {
        f"{method} (paper)": {
            scenario: dict(zip(("mae", "ndcg@1", "ndcg@3"), values, strict=True))
            for scenario, values in rows.items()
        }
        for method, rows in _MELU_TABLE2.items()
    }
}
# The project's goal for the warm-up protocol's MAE, by dataset (stated, not promised).
GOALS = {"melu-ml1m": 0.70}
