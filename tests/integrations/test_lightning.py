"""EvolensCallback on a real PyTorch Lightning Trainer (CPU): steps are optimizer steps, step 0 is the untrained
model, accumulation and several optimizers count right, logged values become scalars, Lightning's checkpoints
are referenced, ``fit(ckpt_path=...)`` resumes the run, a pause verdict stops the trainer, an exception closes
the run cleanly."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

pl = pytest.importorskip("pytorch_lightning")

import evolens  # noqa: E402
from evolens import InputError, Probes  # noqa: E402
from evolens.detect import Threshold  # noqa: E402
from evolens.integrations.lightning import EvolensCallback  # noqa: E402
from evolens.store.arrays import file_hash  # noqa: E402

warnings.filterwarnings("ignore", ".*does not have many workers.*")


class AutoEncoder(pl.LightningModule):
    """A tiny decoder trained to reconstruct random vectors: its ``forward(z)`` is the sampler."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = torch.nn.Linear(8, 4)
        self.decoder = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh())
        self.fail_at = fail_at

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def training_step(self, batch, batch_idx):
        if self.fail_at is not None and self.global_step >= self.fail_at:
            raise RuntimeError("the data loader returned garbage")
        (x,) = batch
        loss = ((self.decoder(self.encoder(x)) - x) ** 2).mean()
        self.log("train/loss", loss)
        self.log("batch_index", float(batch_idx))
        return loss

    def validation_step(self, batch, batch_idx):
        (x,) = batch
        self.log("val_loss", ((self.decoder(self.encoder(x)) - x) ** 2).mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class TwoOptimizers(AutoEncoder):
    """Manual optimisation with two optimizers, as in a GAN: ``global_step`` advances by two per batch."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        (x,) = batch
        opt_a, opt_b = self.optimizers()
        for opt in (opt_a, opt_b):
            loss = ((self.decoder(self.encoder(x)) - x) ** 2).mean()
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
        self.log("train/loss", loss)

    def configure_optimizers(self):
        return [torch.optim.SGD(self.encoder.parameters(), lr=0.1), torch.optim.SGD(self.decoder.parameters(), lr=0.1)]


def loader(n: int = 64, batch: int = 4, seed: int = 0) -> torch.utils.data.DataLoader:
    data = torch.randn(n, 8, generator=torch.Generator().manual_seed(seed))
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data), batch_size=batch)


def trainer(tmp_path, callback, **kwargs) -> "pl.Trainer":
    options = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                   enable_checkpointing=False, limit_val_batches=0, default_root_dir=str(tmp_path))
    options["callbacks"] = [callback] if callback is not None else []
    options.update(kwargs)
    return pl.Trainer(**options)


PROBES = Probes.from_noise(6, 4, seed=3)


def test_snapshots_at_zero_every_k_optimizer_steps_and_the_last_under_accumulation(tmp_path):
    callback = EvolensCallback(tmp_path / "run", every=5, probes=PROBES)
    module = AutoEncoder()
    trainer(tmp_path, callback, max_steps=12, accumulate_grad_batches=2).fit(module, loader())
    assert module.global_step == 12
    with evolens.open_run(tmp_path / "run") as run:
        assert run.steps().tolist() == [0, 5, 10, 12]
        steps, losses = run.scalars("train/loss")
        assert steps.tolist() == list(range(1, 13)) and np.isfinite(losses).all()  # one value per optimizer step
        # the value at an optimizer step is the one logged on the batch that stepped (odd batch indices)
        assert set(run.scalars("batch_index")[1].tolist()) == {1.0, 3.0, 5.0, 7.0, 9.0, 11.0, 13.0, 15.0}
        with torch.no_grad():
            np.testing.assert_allclose(run.samples(12), module(PROBES.noise).numpy(), rtol=0, atol=1e-6)
        assert not np.allclose(run.samples(0), run.samples(12))  # step 0 is the untrained model
    # training is the same as without the callback
    plain = AutoEncoder()
    trainer(tmp_path, None, max_steps=12, accumulate_grad_batches=2).fit(plain, loader())
    for a, b in zip(module.parameters(), plain.parameters()):
        assert torch.equal(a, b)


def test_two_optimizers_capture_when_a_scheduled_step_was_passed(tmp_path):
    callback = EvolensCallback(tmp_path / "run", every=5, probes=PROBES)
    module = TwoOptimizers()
    trainer(tmp_path, callback, max_steps=20).fit(module, loader())
    assert module.global_step == 20
    with evolens.open_run(tmp_path / "run") as run:
        # global_step runs 0, 2, 4, ...: 5 and 15 fall between two batches and are caught at 6 and 16
        assert run.steps().tolist() == [0, 6, 10, 16, 20]
        assert run.scalars("train/loss")[0].tolist() == list(range(2, 21, 2))


def test_resume_from_a_lightning_checkpoint_continues_the_run(tmp_path):
    checkpoints = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1)
    first = EvolensCallback(tmp_path / "run", every=4, probes=PROBES)
    trainer(tmp_path, first, max_steps=7, enable_checkpointing=True, callbacks=[first, checkpoints]).fit(
        AutoEncoder(), loader())
    with evolens.open_run(tmp_path / "run") as run:
        assert run.steps().tolist() == [0, 4, 7]
        referenced = [e.data["path"] for e in run.events(kind="checkpoint")]
        assert sorted(p.rsplit("step=", 1)[1] for p in referenced) == ["3.ckpt", "6.ckpt"]
        assert all(e.data["sha256"] for e in run.events(kind="checkpoint"))
    resumed_callback = EvolensCallback(tmp_path / "run", every=4, probes=PROBES)
    module = AutoEncoder()
    trainer(tmp_path, resumed_callback, max_steps=14).fit(module, loader(), ckpt_path=str(tmp_path / "ckpt" / "epoch=0-step=6.ckpt"))
    assert module.global_step == 14
    with evolens.open_run(tmp_path / "run") as run:
        assert run.steps().tolist() == [0, 4, 7, 8, 12, 14]
        assert run.scalars("train/loss")[0].tolist() == list(range(1, 15))  # continuous across the restart
        assert [e.step for e in run.events(kind="resume")] == [7]
        assert [s["kind"] for s in run.sessions()] == ["capture", "capture"]


def test_a_pause_verdict_stops_the_trainer_and_the_snapshot_checkpoint_resumes_it(tmp_path):
    def signal(monitor, step, arrays):
        return {"pause_signal": float(step >= 6)}

    callback = EvolensCallback(tmp_path / "run", every=3, probes=PROBES, checkpoint=True, on_snapshot=[signal],
                               rules=[Threshold("pause_signal", above=0.5, pause=True)])
    module = AutoEncoder()
    trainer(tmp_path, callback, max_steps=30).fit(module, loader())
    assert callback.paused_at == 6 and module.global_step == 6  # stopped at the verdict's step
    with evolens.open_run(tmp_path / "run") as run:
        assert run.steps().tolist() == [0, 3, 6]
        assert [e.step for e in run.events(kind="pause")] == [6]
        path = run.snapshot(6).checkpoint_path
        assert path is not None and path.endswith("step-6.ckpt")
    # fix, then resume from the snapshot's own checkpoint
    resumed = EvolensCallback(tmp_path / "run", every=3, probes=PROBES, checkpoint=True)
    referenced = file_hash(path)
    module = AutoEncoder()
    trainer(tmp_path, resumed, max_steps=9).fit(module, loader(), ckpt_path=path)
    with evolens.open_run(tmp_path / "run") as run:
        assert run.steps().tolist() == [0, 3, 6, 9]
        assert run.scalars("train/loss")[0].tolist() == list(range(1, 10))
        # the resumed run did not overwrite the checkpoint the paused snapshot references by hash
        assert run.snapshot(6).checkpoint_hash == referenced == file_hash(path)
        assert run.snapshot(9).checkpoint_path.endswith("step-9.ckpt")


def test_validation_values_are_logged_at_their_step(tmp_path):
    callback = EvolensCallback(tmp_path / "run", every=8, probes=PROBES)
    trainer(tmp_path, callback, max_steps=16, limit_val_batches=2, val_check_interval=8,
            num_sanity_val_steps=0).fit(AutoEncoder(), loader(), loader(8, seed=1))
    with evolens.open_run(tmp_path / "run") as run:
        steps, values = run.scalars("val_loss")
        assert steps.tolist() == [8, 16] and np.isfinite(values).all()
        assert len(run.scalars("train/loss")[0]) == 16  # val_loss is not repeated into every training step


def test_an_exception_in_training_is_recorded_and_the_run_closed(tmp_path):
    callback = EvolensCallback(tmp_path / "run", every=2, probes=PROBES)
    with pytest.raises(RuntimeError, match="garbage"):
        trainer(tmp_path, callback, max_steps=10).fit(AutoEncoder(fail_at=3), loader())
    with evolens.open_run(tmp_path / "run") as run:
        assert run.steps().tolist() == [0, 2]
        (event,) = run.events(kind="exception")
        assert event.level == "error" and "garbage" in event.message and event.step == 3
    # the writer lock was released: a new session can write to the run
    with evolens.Monitor(tmp_path / "run", lambda p: torch.zeros(6, 8), every=1, probes=PROBES) as monitor:
        monitor.step(4)


def test_bad_arguments_are_typed_errors(tmp_path):
    with pytest.raises(InputError, match="probes"):
        EvolensCallback(tmp_path / "run", probes="noise")
    with pytest.raises(InputError, match="sample"):
        EvolensCallback(tmp_path / "run", probes=Probes.from_images(np.zeros((2, 1, 4, 4))))
    with pytest.raises(InputError, match="model"):
        EvolensCallback(tmp_path / "run", probes=PROBES, model=torch.nn.Linear(1, 1))
    with pytest.raises(InputError, match="every"):
        EvolensCallback(tmp_path / "run", every="daily", probes=PROBES)
