"""TaNP: the KL term against the closed form worked by hand, cluster assignments that sum to
one, FiLM with gamma = 1 and beta = 0 leaving the decoder's layers as they are, the query
ratings read by the training loss only, and a short meta-training run that learns."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from metarec.build import build_learner
from metarec.config.load import load_config
from metarec.data.batch import query_of, support_of
from metarec.learners.tanp import TaNP, cluster_loss, gaussian_kl
from metarec.pipeline import train

from .conftest import SMALL, global_mean_mae


def _learner(small_tasks, *overrides) -> TaNP:
    torch.manual_seed(0)
    cfg = load_config(None, [*SMALL, "learner.name=tanp", *overrides])
    return build_learner(cfg, small_tasks)


def test_kl_is_the_closed_form_of_two_gaussians():
    # q = N(1, 4), p = N(0, 1): log(1 / 2) + (4 + 1) / 2 - 1 / 2 = 2 - log 2
    q = (torch.tensor([1.0]), torch.tensor([math.log(4.0)]))
    p = (torch.tensor([0.0]), torch.tensor([0.0]))
    assert gaussian_kl(q, p).item() == pytest.approx(2.0 - math.log(2.0), rel=1e-6)
    assert gaussian_kl(p, p).item() == 0.0
    torch.manual_seed(0)
    mu_q, mu_p, log_var_q, log_var_p = torch.randn(4, 3, 5).unbind(0)
    expected = kl_divergence(
        Normal(mu_q, (0.5 * log_var_q).exp()), Normal(mu_p, (0.5 * log_var_p).exp())
    ).sum(-1)
    torch.testing.assert_close(gaussian_kl((mu_q, log_var_q), (mu_p, log_var_p)), expected)


def test_cluster_assignment_is_the_students_t_kernel_and_sums_to_one(small_tasks):
    learner = _learner(small_tasks, "learner.alpha=2.0")
    net = learner.net
    identity = torch.randn(4, net.centroids.shape[1])
    assignment, task = net.assign(identity)
    torch.testing.assert_close(assignment.sum(-1), torch.ones(4))
    centroids = net.centroids.detach()
    for row in range(4):
        kernel = [(1 + float(((identity[row] - c) ** 2).sum()) / 2.0) ** (-1.5) for c in centroids]
        weights = [k / sum(kernel) for k in kernel]
        assert assignment[row].tolist() == pytest.approx(weights, rel=1e-5)
        read = sum(w * c for w, c in zip(weights, centroids, strict=True))
        torch.testing.assert_close(task[row].detach(), identity[row] + read)
    # the clustering loss is KL(P || Q) >= 0, 0 when every task sits wholly in one cluster
    assert cluster_loss(assignment).item() >= 0.0
    one_hot = torch.eye(3)[[0, 1, 2]] * (1 - 3e-6) + 1e-6
    assert cluster_loss(one_hot).item() == pytest.approx(0.0, abs=1e-4)


@pytest.mark.parametrize("modulation", ["film", "gating"])
def test_identity_modulation_leaves_the_decoder_unchanged(small_tasks, modulation):
    net = _learner(small_tasks, f"learner.modulation={modulation}").net
    x, z = torch.randn(2, 3, net.layers[0].in_features - 32), torch.randn(2, 32)
    identity = [
        (torch.ones(2, layer.out_features), torch.zeros(2, layer.out_features))
        for layer in net.layers
    ]
    hidden = torch.cat([x, z.unsqueeze(1).expand(-1, 3, -1)], -1)
    for layer in net.layers:  # the plain MLP, by hand
        hidden = torch.relu(hidden @ layer.weight.T + layer.bias)
    expected = (hidden @ net.out.weight.T + net.out.bias).squeeze(-1)
    torch.testing.assert_close(net.decode(x, z, identity), expected)
    shifted = [(gamma, beta + 1.0) for gamma, beta in identity]
    assert not torch.allclose(net.decode(x, z, shifted), expected)


def test_only_the_training_loss_reads_query_ratings(small_tasks):
    learner = _learner(small_tasks)
    batch = small_tasks.test["new_user"][torch.arange(6)]
    flipped = dict(batch, query_rating=6.0 - batch["query_rating"])
    learner.eval()
    (mean, _), identity = learner.net.encode(support_of(batch))
    state = learner.adapt(support_of(batch))
    torch.testing.assert_close(state[0], mean)  # z at evaluation: the prior's mean
    pred = learner.predict(state, query_of(batch))
    torch.testing.assert_close(learner(flipped), pred, rtol=0, atol=0)
    learner.train()  # the posterior reads them: the loss changes with them
    torch.manual_seed(1)
    loss = learner.training_loss(batch)
    torch.manual_seed(1)
    assert learner.training_loss(flipped).item() != pytest.approx(loss.item())


def test_short_meta_training_beats_the_global_mean(small_tasks, tmp_path):
    overrides = ["learner.name=tanp", "trainer.max_epochs=15", "learner.outer_lr=0.003"]
    cfg = load_config(None, [*SMALL, *overrides, f"output_dir={tmp_path}"])
    result = train(cfg)
    assert result.metrics["new_user"]["mae"] < global_mean_mae(small_tasks, "new_user") - 0.1
