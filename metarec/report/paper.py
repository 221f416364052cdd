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

# TALLRec (Bao et al., RecSys 2023), Table 1, movie (MovieLens-100K), as the README of
# github.com/SAI990323/TALLRec gives it: test AUC x 100 after training on 16 / 64 / 256 samples.
# The baselines are trained on the same few samples; TALLRec tunes LLaMA-7B with LoRA.
_TALLREC_TABLE1 = {
    "GRU4Rec": (49.07, 49.87, 52.89),
    "Caser": (49.68, 51.06, 54.20),
    "SASRec": (50.43, 50.48, 52.25),
    "DROS": (50.76, 51.54, 54.07),
    "GRU-BERT": (50.85, 51.65, 53.44),
    "DROS-BERT": (50.21, 51.71, 53.94),
    "TALLRec": (67.24, 67.48, 71.98),
}
# Few-shot tables, by dataset: the grid key of their axis, and "<method> (paper)" -> its value
# on that axis -> AUC (0-1, as metarec's summaries hold it).
FEW_SHOT_PAPER = {
    "tallrec-ml100k": {
        "axis": "data.tallrec.train_samples",
        "source": "TALLRec (Bao et al., RecSys 2023), Table 1, movie",
        "rows": {
            f"{method} (paper)": {
                samples: round(auc / 100, 4)
                for samples, auc in zip((16, 64, 256), values, strict=True)
            }
            for method, values in _TALLREC_TABLE1.items()
        },
    }
}
