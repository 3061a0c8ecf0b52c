"""CLIP and DINOv2 loaded through the real loading path from directories of tiny random models."""

import json

import numpy as np
import pytest
import torch

from evolens import InputError
from evolens.encoders import CLIPEncoder, DINOv2Encoder, WeightsNotFoundError

transformers = pytest.importorskip("transformers")


def make_tiny_clip(folder):
    """A tiny random CLIP (both towers and a byte-pair tokenizer) saved in ``folder``, the real layout."""
    torch.manual_seed(0)
    config = transformers.CLIPConfig(
        text_config=dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    transformers.CLIPModel(config).save_pretrained(folder)
    # A tiny byte-pair vocabulary: the special tokens and single letters (end-of-word forms too).
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in letters:
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    tokenizer.save_pretrained(folder)
    return folder


def make_tiny_dinov2(folder):
    """A tiny random DINOv2 (28 px, patch 14) saved in ``folder``."""
    torch.manual_seed(0)
    config = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, image_size=28, patch_size=14)
    transformers.Dinov2Model(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return make_tiny_clip(tmp_path_factory.mktemp("models") / "clip")


def test_clip_image_features_match_transformers(clip_dir):
    encoder = CLIPEncoder(path=clip_dir, device="cpu")
    assert encoder.dim == 16 and encoder.input_size == (32, 32) and encoder.id.startswith("clip@")
    images = np.random.default_rng(0).random((3, 3, 32, 32)).astype(np.float32)
    ours = encoder.encode(images)
    model = transformers.CLIPModel.from_pretrained(clip_dir).eval()
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    with torch.no_grad():
        pixel_values = (torch.from_numpy(images) - mean) / std
        expected = model.visual_projection(model.vision_model(pixel_values=pixel_values).pooler_output)
    expected = torch.nn.functional.normalize(expected, dim=-1).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-5)


def test_clip_text_tower_and_zero_shot(clip_dir):
    encoder = CLIPEncoder(path=clip_dir, device="cpu")
    text = encoder.encode_text(["a photo of a cat", "a dog"])
    assert text.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, rtol=1e-5)
    probabilities = encoder.zero_shot(np.random.default_rng(1).random((4, 1, 28, 28)), ["blond hair", "grey hair", "black hair"])
    assert probabilities.shape == (4, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(InputError, match="prompts: expected a non-empty list of strings"):
        encoder.encode_text("a cat")


def test_zero_shot_attribute_labels(clip_dir):
    from evolens.metrics import labels_from_prompts

    encoder = CLIPEncoder(path=clip_dir, device="cpu")
    images = np.random.default_rng(2).random((5, 3, 32, 32)).astype(np.float32)
    prompts = ["blond hair", "grey hair", "black hair"]
    labels = labels_from_prompts(images, encoder, prompts)
    assert labels.tolist() == encoder.zero_shot(images, prompts).argmax(axis=1).tolist()
    with pytest.raises(InputError, match="clip: expected a CLIP encoder"):
        labels_from_prompts(images, object(), prompts)


def test_dinov2_features_match_transformers(tmp_path):
    folder = make_tiny_dinov2(tmp_path / "dinov2")
    encoder = DINOv2Encoder(path=folder, image_size=28, device="cpu")
    images = np.random.default_rng(0).random((2, 3, 28, 28)).astype(np.float32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    model = transformers.AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        expected = model(pixel_values=(torch.from_numpy(images) - mean) / std).pooler_output.numpy()
    np.testing.assert_allclose(encoder.encode(images), expected, rtol=1e-4, atol=1e-5)


def test_missing_and_wrong_directories(tmp_path, clip_dir, monkeypatch):
    monkeypatch.delenv("EVOLENS_WEIGHTS", raising=False)
    with pytest.raises(WeightsNotFoundError, match="expected directory 'clip'"):
        CLIPEncoder(device="cpu")
    monkeypatch.setenv("EVOLENS_WEIGHTS", str(clip_dir.parent))
    assert CLIPEncoder.weights_status()[0]
    with pytest.raises(InputError, match="expected a DINOv2 model directory"):
        DINOv2Encoder(path=clip_dir, device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a loadable CLIP model directory"):
        CLIPEncoder(path=tmp_path / "empty", device="cpu")
