# examples/diffusers_train.py — a diffusers DDPM on 8×8 digits, each snapshot sampled from the same noise
import sys

import diffusers
import torch

import evolens
from evolens.data import digits
from evolens.integrations.diffusers import fixed_noise_sampler

run_dir = sys.argv[1] if len(sys.argv) > 1 else "runs/diffusers-ddpm"
data = digits("train")
images = torch.from_numpy(data.images) * 2 - 1   # diffusers' convention: [-1, 1]
torch.manual_seed(0)
unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                             block_out_channels=(16, 32), norm_num_groups=8,
                             down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))
scheduler = diffusers.DDPMScheduler(num_train_timesteps=200)
optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-3)

sampler = fixed_noise_sampler(unet, diffusers.DDIMScheduler.from_config(scheduler.config), num_inference_steps=20)
monitor = evolens.Monitor(run_dir, sampler, every=40, probes=evolens.Probes.from_noise(32, (1, 8, 8), seed=0),
                          model=unet)
monitor.add_reference("train", data.images, data.labels)

for step in range(121):
    x0 = images[torch.randint(len(images), (64,))]
    noise, t = torch.randn_like(x0), torch.randint(scheduler.config.num_train_timesteps, (64,))
    loss = torch.nn.functional.mse_loss(unet(scheduler.add_noise(x0, noise, t), t).sample, noise)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if monitor.step(step, loss=loss.item()).should_pause:
        break
monitor.close()
