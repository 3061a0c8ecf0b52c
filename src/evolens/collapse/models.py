"""Density models that PLE and MLE estimate: a Gaussian, a Gaussian mixture, a small VAE.

Every model is an ``nn.Module`` with the same small interface, so that the trainers and the self-consuming loop
work with any of them (and with a user's own model that follows it):

- ``nll(x)`` → (n,) negative log-likelihood of each sample in nats (for the VAE: the negative ELBO, an upper bound);
- ``rsample(n, generator=None)`` → (n, *sample_shape) samples that are differentiable in the parameters;
- ``sample(n, generator=None)`` → the same without gradients, as a numpy array;
- ``init_from_data(x, generator)`` (optional) → set a data-driven starting point;
- ``describe()`` → a dict of readable parameter values (floats) for logging.

Differentiable sampling, by model:

- Gaussian: the reparameterisation x = μ + σ ε.
- Gaussian mixture: the component is drawn with the straight-through Gumbel-softmax estimator (Jang et al. 2017):
  the forward pass uses the hard one-hot draw (samples come exactly from the mixture), the backward pass the
  gradient of the relaxed softmax at temperature ``tau``; the component sample is reparameterised. Chosen over
  REINFORCE for its low variance; its bias is small at tau ≤ 1 and it does not change the samples.
- VAE: z ~ N(0, I) is reparameterised and the decoder's Bernoulli mean (pixel probabilities) is returned, the
  usual choice for MNIST VAEs; drawing binary pixels would not be differentiable.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._validation import check_int, check_positive
from ..errors import InputError

__all__ = ["DensityModel", "Gaussian", "GaussianMixture", "VAE"]

_LOG_2PI = math.log(2 * math.pi)


class DensityModel(nn.Module):
    """Base class of the estimable models; ``forward(x)`` is ``nll(x)``."""

    in_features: int

    def nll(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def rsample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nll(x)

    def _check_x(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise InputError(f"x: expected a torch.Tensor, received {type(x).__name__}")
        flat = x.reshape(x.shape[0], -1) if x.ndim > 1 else x.reshape(-1, 1)
        if flat.shape[1] != self.in_features:
            raise InputError(f"x: expected {self.in_features} features per sample, received shape={tuple(x.shape)}")
        return flat

    def sample(self, n: int, generator: torch.Generator | None = None) -> np.ndarray:
        """(n, *sample_shape) float32 samples, without gradients."""
        with torch.no_grad():
            return self.rsample(int(n), generator=generator).detach().cpu().numpy().astype(np.float32)

    def describe(self) -> dict[str, float]:
        """Readable parameter values (floats) for logging; empty for models with many weights."""
        return {}

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def _randn(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    gen_device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=gen_device, dtype=like.dtype).to(like.device)


def _rand(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    gen_device = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, device=gen_device, dtype=like.dtype).to(like.device)


class Gaussian(DensityModel):
    """Diagonal Gaussian N(mean, diag(exp(log_std))²) in ``dim`` dimensions; parameters ``mean``, ``log_std``."""

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.in_features = check_int(dim, "dim", minimum=1)
        self.mean = nn.Parameter(torch.zeros(self.in_features))
        self.log_std = nn.Parameter(torch.zeros(self.in_features))

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check_x(x)
        z = (x - self.mean) * torch.exp(-self.log_std)
        return 0.5 * (z**2).sum(dim=1) + self.log_std.sum() + 0.5 * self.in_features * _LOG_2PI

    def rsample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = _randn((int(n), self.in_features), self.mean, generator)
        return self.mean + torch.exp(self.log_std) * eps

    def init_from_data(self, x: torch.Tensor, generator: torch.Generator | None = None) -> None:
        x = self._check_x(x)
        with torch.no_grad():
            self.mean.copy_(x.mean(dim=0))
            self.log_std.copy_(torch.log(x.std(dim=0, unbiased=False).clamp_min(1e-3)))

    @torch.no_grad()
    def describe(self) -> dict[str, float]:
        out = {}
        for i in range(self.in_features):
            suffix = "" if self.in_features == 1 else f"/{i}"
            out[f"mean{suffix}"] = float(self.mean[i])
            out[f"var{suffix}"] = float(torch.exp(2 * self.log_std[i]))
        return out


class GaussianMixture(DensityModel):
    """Mixture of ``k`` diagonal Gaussians in ``dim`` dimensions; parameters ``logits`` (k,), ``means`` (k, dim),
    ``log_stds`` (k, dim). ``tau``: Gumbel-softmax temperature of :meth:`rsample`'s backward pass."""

    def __init__(self, k: int = 2, dim: int = 1, tau: float = 0.5) -> None:
        super().__init__()
        self.k, self.in_features = check_int(k, "k", minimum=1), check_int(dim, "dim", minimum=1)
        self.tau = check_positive(tau, "tau")
        self.logits = nn.Parameter(torch.zeros(self.k))
        self.means = nn.Parameter(torch.linspace(-1, 1, self.k)[:, None].repeat(1, self.in_features))
        self.log_stds = nn.Parameter(torch.zeros(self.k, self.in_features))

    def component_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """(n, k) log p(x, component) = log w_c + log N(x; μ_c, σ_c²)."""
        x = self._check_x(x)
        z = (x[:, None, :] - self.means) * torch.exp(-self.log_stds)
        log_normal = -0.5 * (z**2).sum(-1) - self.log_stds.sum(-1) - 0.5 * self.in_features * _LOG_2PI
        return torch.log_softmax(self.logits, dim=0) + log_normal

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        return -torch.logsumexp(self.component_log_prob(x), dim=1)

    def rsample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        n = int(n)
        u = _rand((n, self.k), self.logits, generator).clamp(1e-10, 1 - 1e-10)
        gumbel = -torch.log(-torch.log(u))
        soft = torch.softmax((self.logits + gumbel) / self.tau, dim=1)
        hard = F.one_hot(soft.argmax(dim=1), self.k).to(soft.dtype)
        choice = hard - soft.detach() + soft  # straight-through: hard forward, relaxed gradient
        eps = _randn((n, self.k, self.in_features), self.means, generator)
        components = self.means + torch.exp(self.log_stds) * eps
        return (choice[:, :, None] * components).sum(dim=1)

    def init_from_data(self, x: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """k-means (scikit-learn, seeded from ``generator``) for means, cluster spreads and shares."""
        from sklearn.cluster import KMeans

        data = self._check_x(x).detach().cpu().double().numpy()
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item()) if generator is not None else 0
        k = min(self.k, len(np.unique(data, axis=0)))
        km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(data)
        means = np.array(km.cluster_centers_)
        counts = np.bincount(km.labels_, minlength=k).astype(float)
        stds = np.stack([data[km.labels_ == c].std(axis=0) if counts[c] > 1 else data.std(axis=0) for c in range(k)])
        if k < self.k:  # fewer distinct points than components: repeat the last cluster
            extra = self.k - k
            means = np.vstack([means, np.repeat(means[-1:], extra, 0)])
            stds = np.vstack([stds, np.repeat(stds[-1:], extra, 0)])
            counts = np.concatenate([counts, np.full(extra, 0.5)])
        order = np.argsort(means[:, 0])  # sorted along the first axis: components keep an interpretable order
        with torch.no_grad():
            self.means.copy_(torch.as_tensor(means[order]))
            self.log_stds.copy_(torch.log(torch.as_tensor(stds[order]).clamp_min(1e-2 * data.std() + 1e-6)))
            self.logits.copy_(torch.log(torch.as_tensor(counts[order] / counts.sum())))

    def weights(self) -> torch.Tensor:
        """(k,) mixture weights."""
        return torch.softmax(self.logits, dim=0)

    @torch.no_grad()
    def describe(self) -> dict[str, float]:
        out: dict[str, float] = {}
        w = self.weights()
        for c in range(self.k):
            out[f"weight/{c}"] = float(w[c])
            for i in range(self.in_features):
                suffix = "" if self.in_features == 1 else f"/{i}"
                out[f"mean/{c}{suffix}"] = float(self.means[c, i])
                out[f"var/{c}{suffix}"] = float(torch.exp(2 * self.log_stds[c, i]))
        return out


class VAE(DensityModel):
    """Fully connected VAE on images in [0, 1] (e.g. (n, 1, 28, 28) MNIST), Bernoulli decoder.

    Parameters are ``encoder.*``, ``to_stats.*`` and ``decoder.*``; ``nll`` is the negative ELBO (one
    reparameterised draw of z, nats per image); ``rsample`` returns decoder means, shape (n, *image_shape).
    """

    def __init__(self, image_shape: tuple[int, ...] = (1, 28, 28), latent_dim: int = 8, hidden: int = 128) -> None:
        super().__init__()
        if isinstance(image_shape, (str, bytes)) or not hasattr(image_shape, "__iter__"):
            raise InputError(f"image_shape: expected a tuple of positive integers, received {image_shape!r}")
        self.image_shape = tuple(check_int(s, "image_shape", minimum=1) for s in image_shape)
        self.in_features = int(np.prod(self.image_shape))
        self.latent_dim = check_int(latent_dim, "latent_dim", minimum=1)
        hidden = check_int(hidden, "hidden", minimum=1)
        self.encoder = nn.Sequential(nn.Linear(self.in_features, hidden), nn.ELU())
        self.to_stats = nn.Linear(hidden, 2 * self.latent_dim)
        self.decoder = nn.Sequential(nn.Linear(self.latent_dim, hidden), nn.ELU(), nn.Linear(hidden, self.in_features))

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        flat = self._check_x(x)
        mu, logvar = self.to_stats(self.encoder(flat)).chunk(2, dim=1)
        logvar = logvar.clamp(-10, 10)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        logits = self.decoder(z)
        recon = F.binary_cross_entropy_with_logits(logits, flat, reduction="none").sum(dim=1)
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(dim=1)
        return recon + kl

    def rsample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        weight = self.decoder[0].weight
        z = _randn((int(n), self.latent_dim), weight, generator)
        return torch.sigmoid(self.decoder(z)).reshape(int(n), *self.image_shape)
