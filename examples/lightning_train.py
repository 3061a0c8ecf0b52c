# examples/lightning_train.py — a VAE on 8×8 digits, watched by evolens through a Lightning callback
import sys

import pytorch_lightning as pl
import torch

import evolens
from evolens.data import digits
from evolens.integrations.lightning import EvolensCallback


class DigitVAE(pl.LightningModule):
    def __init__(self, latent: int = 8) -> None:
        super().__init__()
        self.encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 128), torch.nn.ReLU(),
                                           torch.nn.Linear(128, 2 * latent))
        self.decoder = torch.nn.Sequential(torch.nn.Linear(latent, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64),
                                           torch.nn.Sigmoid(), torch.nn.Unflatten(1, (1, 8, 8)))

    def forward(self, z):  # the sampler: latent noise -> images in [0, 1]
        return self.decoder(z)

    def training_step(self, batch, batch_idx):
        x, _ = batch
        mean, log_var = self.encoder(x).chunk(2, dim=1)
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp()
        reconstruction = torch.nn.functional.binary_cross_entropy(self.decoder(z), x, reduction="sum") / len(x)
        kl = -0.5 * (1 + log_var - mean**2 - log_var.exp()).sum() / len(x)
        self.log_dict({"loss": reconstruction + kl, "kl": kl})
        return reconstruction + kl

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=2e-3)


run_dir = sys.argv[1] if len(sys.argv) > 1 else "runs/lightning-vae"
data = digits("train")
loader = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(torch.from_numpy(data.images), torch.from_numpy(data.labels)), batch_size=64,
    shuffle=True)
callback = EvolensCallback(run_dir, every=50, probes=evolens.Probes.from_noise(64, 8, seed=0),
                           tensorboard=f"{run_dir}-tensorboard")   # live mirror: tensorboard --logdir ...
callback.add_reference("train", data.images, data.labels)   # what analyses compare the samples with
trainer = pl.Trainer(max_steps=200, accelerator="cpu", callbacks=[callback], logger=False,
                     enable_checkpointing=False, enable_progress_bar=False)
trainer.fit(DigitVAE(), loader)
