"""The small models of the experiments and the demo, in one place; each trains on CPU in minutes.

- ``DDPM`` + ``SmallUNet``: a small DDPM (U-Net, linear schedule, ε-prediction) on 16x16 digits (the
  biased-generalization experiment);
- ``ConditionalVAE`` + ``vae_loss``: a conditional VAE on 28x28 digits (the demo);
- ``Translator``: a small image-to-image network (the attribute-bias experiment).

About the DDPM:

Sampling is ancestral DDPM on a respaced schedule (Nichol & Dhariwal 2021): ``sample_steps`` of the
``T`` training steps, with betas recomputed so the marginals match. Every random draw of the sampler comes
from the probes (``probes.noise`` is x_T, ``probes.noise_at(t)`` the reverse noise of step t), so two models
sampled from the same probes share the whole noise sequence, as the biased-generalization measure requires.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..capture import Probes


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding (n, dim) of integer timesteps t (n,)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, tdim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(4, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.time = nn.Linear(tdim, cout)
        self.norm2, self.conv2 = nn.GroupNorm(4, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.time(temb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + self.skip(x)


class SmallUNet(nn.Module):
    """U-Net for (n, 1, 16, 16): base width ``width``, multipliers 1-2-2, dropout 0.1 (~95k parameters)."""

    def __init__(self, width: int = 16, tdim: int = 64) -> None:
        super().__init__()
        self.tdim = tdim
        self.time = nn.Sequential(nn.Linear(tdim, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        w1, w2 = width, 2 * width
        self.inp = nn.Conv2d(1, w1, 3, padding=1)
        self.down1, self.down2 = ResBlock(w1, w1, tdim), ResBlock(w1, w2, tdim)
        self.mid = ResBlock(w2, w2, tdim)
        self.up2, self.up1 = ResBlock(2 * w2, w2, tdim), ResBlock(w2 + w1, w1, tdim)
        self.out = nn.Sequential(nn.GroupNorm(4, w1), nn.SiLU(), nn.Conv2d(w1, 1, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = self.time(timestep_embedding(t, self.tdim))
        h1 = self.down1(self.inp(x), temb)                      # 16x16
        h2 = self.down2(F.avg_pool2d(h1, 2), temb)              # 8x8
        h = self.mid(F.avg_pool2d(h2, 2), temb)                 # 4x4
        h = self.up2(torch.cat([F.interpolate(h, scale_factor=2.0), h2], 1), temb)
        h = self.up1(torch.cat([F.interpolate(h, scale_factor=2.0), h1], 1), temb)
        return self.out(h)


class SelfAttention(nn.Module):
    """Single-head self-attention over the pixels of a feature map, with a residual connection."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(8, channels)
        self.attention = nn.MultiheadAttention(channels, num_heads=4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)
        out, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        return x + out.transpose(1, 2).reshape(n, c, h, w)


class PaperUNet(nn.Module):
    """The U-Net of the biased-generalization paper's CelebA part (``Utils/Unet.py``): base width ``base``,
    multipliers 1-2-4, ``blocks`` residual blocks per level, self-attention at the 16² and 8² levels and in the
    bottleneck, dropout 0.1 — about 4 M parameters at base 32 on (n, 1, 32, 32) images."""

    def __init__(self, base: int = 32, multipliers: tuple[int, ...] = (1, 2, 4), blocks: int = 2,
                 attention: tuple[bool, ...] = (False, True, True), channels: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        tdim = 4 * base
        self.base = base
        self.time = nn.Sequential(nn.Linear(base, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.inp = nn.Conv2d(channels, base, 3, padding=1)
        self.down, self.down_attention, self.downsample = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        widths, width = [base], base
        for level, multiplier in enumerate(multipliers):
            for _ in range(blocks):
                self.down.append(ResBlock(width, base * multiplier, tdim, dropout))
                width = base * multiplier
                self.down_attention.append(SelfAttention(width) if attention[level] else nn.Identity())
                widths.append(width)
            if level < len(multipliers) - 1:
                self.downsample.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
                widths.append(width)
        self.mid1, self.mid_attention, self.mid2 = ResBlock(width, width, tdim, dropout), SelfAttention(width), \
            ResBlock(width, width, tdim, dropout)
        self.up, self.up_attention, self.upsample = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for level, multiplier in reversed(list(enumerate(multipliers))):
            for _ in range(blocks + 1):
                self.up.append(ResBlock(width + widths.pop(), base * multiplier, tdim, dropout))
                width = base * multiplier
                self.up_attention.append(SelfAttention(width) if attention[level] else nn.Identity())
            if level > 0:
                self.upsample.append(nn.Conv2d(width, width, 3, padding=1))
        self.out = nn.Sequential(nn.GroupNorm(8, width), nn.SiLU(), nn.Conv2d(width, channels, 3, padding=1))
        self.blocks, self.levels = blocks, len(multipliers)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = self.time(timestep_embedding(t, self.base))
        h = self.inp(x)
        skips = [h]
        block = 0
        for level in range(self.levels):
            for _ in range(self.blocks):
                h = self.down_attention[block](self.down[block](h, temb))
                skips.append(h)
                block += 1
            if level < self.levels - 1:
                h = self.downsample[level](h)
                skips.append(h)
        h = self.mid2(self.mid_attention(self.mid1(h, temb)), temb)
        block = 0
        for level in range(self.levels):
            for _ in range(self.blocks + 1):
                h = self.up_attention[block](self.up[block](torch.cat([h, skips.pop()], 1), temb))
                block += 1
            if level < self.levels - 1:
                h = self.upsample[level](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(h)


class DDPM:
    """Linear-beta DDPM with ``T`` steps (betas 1e-4 .. 0.02) around an ε-predicting network."""

    def __init__(self, model: nn.Module, T: int = 1000, device: str | torch.device = "cpu") -> None:
        self.model, self.T, self.device = model, T, torch.device(device)
        self.betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
        self.alpha_bar = torch.cumprod(1.0 - self.betas, dim=0)

    def loss(self, x0: torch.Tensor, t: torch.Tensor | None = None, noise: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-image denoising loss (n,): mean squared error of the predicted noise at random (or given) t."""
        n = x0.shape[0]
        if t is None:
            t = torch.randint(0, self.T, (n,), generator=generator).to(x0.device)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator).to(x0.device)
        ab = self.alpha_bar.to(x0.device)[t].float()[:, None, None, None]
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        return ((self.model(xt, t) - noise) ** 2).mean(dim=(1, 2, 3))

    @torch.no_grad()
    def sample(self, probes: Probes, sample_steps: int = 100, *, variance: str = "posterior",
               clamp: bool = True) -> torch.Tensor:
        """Ancestral sampling from the probes' x_T and per-step noise (``probes.noise_at``).

        Args:
            sample_steps: reverse steps; fewer than ``T`` respaces the schedule (Nichol & Dhariwal 2021).
            variance: ``"posterior"`` (σ² = β̃, the posterior variance) or ``"beta"`` (σ² = β_t).
            clamp: clamp the final sample to [-1, 1].

        The paper's sampler (arXiv 2603.03469, ``Utils/Diffusion.py``) is ``sample_steps=T, variance="beta",
        clamp=False``: the full ancestral chain, σ_t² = β_t, no noise at the last step, no clamp.
        """
        if variance not in ("posterior", "beta"):
            raise ValueError(f"variance: expected 'posterior' or 'beta', received {variance!r}")
        use = torch.linspace(0, self.T - 1, sample_steps).round().long()
        alpha_bar = self.alpha_bar[use]
        prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        betas = 1.0 - alpha_bar / prev
        x = probes.noise.to(self.device)
        for i in reversed(range(sample_steps)):
            t = torch.full((x.shape[0],), int(use[i]), device=self.device, dtype=torch.long)
            eps = self.model(x, t)
            ab, b = float(alpha_bar[i]), float(betas[i])
            mean = (x - b / math.sqrt(1 - ab) * eps) / math.sqrt(1 - b)
            if i > 0:
                sigma2 = b * (1 - float(prev[i])) / (1 - ab) if variance == "posterior" else b
                x = mean + math.sqrt(sigma2) * probes.noise_at(i, device=self.device)
            else:
                x = mean
        return x.clamp(-1.0, 1.0) if clamp else x


class ConditionalVAE(nn.Module):
    """Convolutional VAE on (n, 1, 28, 28) images, conditioned on a class label (one-hot)."""

    def __init__(self, latent_dim: int = 16, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.encoder = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1), nn.LeakyReLU(0.2),          # 14x14
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),  # 7x7
            nn.Flatten(),
        )
        self.to_stats = nn.Sequential(
            nn.Linear(2 * width * 49 + num_classes, 256), nn.LeakyReLU(0.2), nn.Linear(256, 2 * latent_dim)
        )
        self.from_latent = nn.Sequential(
            nn.Linear(latent_dim + num_classes, 256), nn.ReLU(), nn.Linear(256, 2 * width * 49), nn.ReLU()
        )
        self.decoder = nn.Sequential(
            nn.Unflatten(1, (2 * width, 7, 7)),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(),  # 14x14
            nn.ConvTranspose2d(width, 1, 4, 2, 1),                     # 28x28 logits
        )

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, 1, 28, 28) images and (n,) labels → mean and log-variance, each (n, latent_dim)."""
        h = torch.cat([self.encoder(x), F.one_hot(y, self.num_classes).float()], dim=1)
        mu, logvar = self.to_stats(h).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(n, latent_dim) latents and (n,) labels → (n, 1, 28, 28) pixel logits."""
        return self.decoder(self.from_latent(torch.cat([z, F.one_hot(y, self.num_classes).float()], dim=1)))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x, y)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z, y), mu, logvar


def vae_loss(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Negative ELBO per image in nats: Bernoulli reconstruction + KL(q(z|x) || N(0, I)), batch mean."""
    reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return (reconstruction + kl) / x.shape[0]


class Translator(nn.Module):
    """Small encoder-decoder CNN (28 → 7 → 28): (n, 1, 28, 28) digits in [0, 1] → translated digits in [0, 1].

    The 7x7 bottleneck sees the whole digit, so the network can change a digit's shape, not only its strokes.
    """

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.encode = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1), nn.LeakyReLU(0.2),              # 14x14
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),      # 7x7
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.LeakyReLU(0.2),
        )
        self.decode = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(),     # 14x14
            nn.ConvTranspose2d(width, 1, 4, 2, 1),                        # 28x28 logits
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode(self.encode(x)))
