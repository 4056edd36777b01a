"""DeepCluster: cluster every image's features with k-means at the start of each epoch and train the network to
predict its cluster; the classifier's last layer is re-initialised after each re-clustering.

- [0] DeepCluster, 2018, https://arxiv.org/abs/1807.05520
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sslinspect.config import PretrainConfig
from sslinspect.data.loader import BatchSource
from sslinspect.data.views import OneView
from sslinspect.methods.base import MethodSpec, SSLModel, StepOutput, mlp
from sslinspect.preprocess import normalize_u8

PCA_DIMS = 64
KMEANS_ITERS = 20
EMBED_BATCH = 256


@torch.no_grad()
def pca_whiten(x: torch.Tensor, dims: int) -> torch.Tensor:
    """Project ``(N, D)`` onto its first ``dims`` principal components, whitened, then L2-normalised (as in [0])."""
    xc = x - x.mean(0, keepdim=True)
    _, s, vt = torch.linalg.svd(xc, full_matrices=False)
    d = min(dims, vt.shape[0])
    z = xc @ vt[:d].T / (s[:d] / max(1, x.shape[0] - 1) ** 0.5 + 1e-5)
    return F.normalize(z, dim=1)


@torch.no_grad()
def kmeans(x: torch.Tensor, k: int, *, iters: int = KMEANS_ITERS, seed: int = 0) -> torch.Tensor:
    """Spherical k-means of L2-normalised rows ``(N, d)``; returns labels ``(N,)``.

    An empty cluster is re-seeded with the point farthest from its centroid, so every cluster keeps members.
    """
    g = torch.Generator().manual_seed(seed)
    centroids = x[torch.randperm(x.shape[0], generator=g)[:k].to(x.device)].clone()
    labels = (x @ centroids.T).argmax(1)
    for _ in range(iters):
        counts = torch.bincount(labels, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)
        centroids = torch.where((counts > 0).unsqueeze(1), sums / counts.clamp(min=1).unsqueeze(1), centroids)
        empty = (counts == 0).nonzero().flatten()
        if len(empty):
            far = (x * centroids[labels]).sum(1).argsort()[: len(empty)]
            centroids[empty] = x[far]
        centroids = F.normalize(centroids, dim=1)
        labels = (x @ centroids.T).argmax(1)
    return labels


class DeepCluster(SSLModel):
    """Backbone → 2-layer MLP classifier over ``clusters`` pseudo-classes, loss weighted by inverse cluster size
    (the paper samples images uniformly over clusters; weighting does the same without a special sampler)."""

    pseudo: torch.Tensor
    class_weight: torch.Tensor

    def __init__(self, backbone: nn.Module, cfg: PretrainConfig) -> None:
        """Build the classifier; pseudo-labels come with the first :meth:`on_epoch_start`."""
        super().__init__(backbone)
        self.max_clusters = cfg.clusters
        self.active = cfg.clusters
        self.seed = cfg.seed
        self.classifier = mlp(self.feature_dim, cfg.hidden_dim, cfg.clusters)
        # derived from the images every epoch, so not saved (a resumed run re-clusters first)
        self.register_buffer("pseudo", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("class_weight", torch.ones(cfg.clusters), persistent=False)

    @torch.no_grad()
    def on_epoch_start(self, epoch: int, source: BatchSource) -> None:
        """Embed every cached image, PCA-whiten, k-means; reset the classifier's last layer.

        With several processes only rank 0 embeds and clusters; labels, weights and the new last layer are
        broadcast, so every replica trains on the same targets with the same classifier.
        """
        last = self.classifier[-1]
        assert isinstance(last, nn.Linear)
        device = last.weight.device
        labels = torch.zeros(len(source.images), dtype=torch.long, device=device)
        k = torch.zeros((), dtype=torch.long, device=device)
        if self.gather.rank == 0:
            feats = self._embed(source.images)
            k.fill_(min(self.max_clusters, max(2, len(feats) // 8)))
            labels = kmeans(pca_whiten(feats, PCA_DIMS), int(k), seed=self.seed * 1000 + epoch).to(device)
            last.reset_parameters()
        if self.gather.world_size > 1:
            for t in (labels, k, last.weight, *([last.bias] if last.bias is not None else [])):
                torch.distributed.broadcast(t, src=0)
        active = int(k)
        counts = torch.bincount(labels, minlength=self.max_clusters).float()
        weight = torch.where(counts > 0, 1.0 / counts.clamp(min=1), torch.zeros_like(counts))
        self.class_weight = (weight / weight[:active][counts[:active] > 0].mean())[:active]
        self.pseudo, self.active = labels, active

    def _embed(self, images: np.ndarray) -> torch.Tensor:
        device = next(self.parameters()).device
        was_training = self.backbone.training
        self.backbone.eval()
        chunks = [
            self.backbone(normalize_u8(torch.from_numpy(np.array(images[i : i + EMBED_BATCH])).to(device))).float()
            for i in range(0, len(images), EMBED_BATCH)
        ]
        self.backbone.train(was_training)
        return torch.cat(chunks)

    def forward(self, views: list[torch.Tensor], rows: torch.Tensor | None = None) -> StepOutput:
        """Cross entropy of the batch's pseudo-labels (looked up by cache row)."""
        if rows is None or not len(self.pseudo):
            raise RuntimeError("deepcluster needs the cache rows and on_epoch_start() before training")
        h = self.backbone(views[0])
        logits = self.classifier(h)[:, : self.active].float()
        loss = F.cross_entropy(logits, self.pseudo[rows.to(self.pseudo.device)], weight=self.class_weight)
        return StepOutput(loss, h.detach())


SPEC = MethodSpec(
    name="deepcluster",
    make_model=DeepCluster,
    make_views=lambda cfg: OneView(cfg.augment, cfg.image_size),
    optimizer="adamw",
    base_lr=2e-3,
)
