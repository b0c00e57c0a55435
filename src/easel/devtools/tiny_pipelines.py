"""Tiny random-weight diffusion pipelines saved in the exact layout of a hub repository.

The architectures follow the real layouts at a size that runs on a CPU: SD 1.x and SDXL (component
classes, a VAE with x8 downsampling, an SDXL UNet conditioned on pooled text and time ids), the DiT
families Z-Image, FLUX.2 klein and Qwen-Image (a flow-matching transformer, its family's
autoencoder, a Qwen text encoder with a byte-level BPE tokenizer that reads any language), and
TAESD, the tiny autoencoder that decodes SD latents in place of the VAE.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLFlux2,
    AutoencoderKLQwenImage,
    AutoencoderTiny,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    Flux2KleinPipeline,
    Flux2Transformer2DModel,
    QwenImagePipeline,
    QwenImageTransformer2DModel,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
    ZImagePipeline,
    ZImageTransformer2DModel,
)
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Tokenizer,
    Qwen3Config,
    Qwen3ForCausalLM,
    Qwen3Model,
)

_BOS = "<|startoftext|>"
_EOS = "<|endoftext|>"
_MAX_TOKENS = 77
# Printable ASCII minus the space: CLIP splits words on whitespace, so the space never reaches BPE.
_CHARS = [chr(code) for code in range(0x21, 0x7F)]
_TEXT_HIDDEN = 32
_TIME_EMBED_DIM = 8
# Latent side of the native resolution (x8 VAE): 256 px for SD; 512 px for SDXL, where one 25-step
# guided image still takes about 1 s on two CPU cores.
_SD_SAMPLE_SIZE = 32
_SDXL_SAMPLE_SIZE = 64
# Z-Image's native side in pixels (x8 VAE, 2x2 patches: 256 image tokens), where a 4-step image
# takes a fraction of a second on two CPU cores.
_ZIMAGE_NATIVE_SIDE = 256
_QWEN_HIDDEN = 32
# FLUX.2 klein reads the Qwen3 encoder's hidden states 9, 18 and 27: it needs 27 layers.
_KLEIN_TEXT_LAYERS = (9, 18, 27)
_QWEN_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# The shape of Qwen's chat format, which both pipelines wrap the prompt in; the thinking switch
# they pass is accepted and ignored.
_QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# What the BPE merges are learnt from: English and Chinese prompts, the seed prompt among them.
# Every byte is in the base alphabet, so any text encodes; these lines only shape the merges.
_TOKENIZER_CORPUS = (
    "a cute cat walking in space, realistic style",
    "一只在太空中行走的可爱猫咪,写实风格",
    "a watercolor painting of a lighthouse at dawn",
    "一座黎明时分的灯塔,水彩画",
    "a red apple on a wooden table, studio lighting",
)


def build_tiny_sd(path: Path, *, seed: int = 0) -> Path:
    """Write a random-weight SD 1.x pipeline (StableDiffusionPipeline, 256 px native) to `path`.

    Weights depend only on `seed`. Returns `path`.
    """
    path = Path(path)
    tokenizer = _write_tokenizer(path / "tokenizer")
    torch.manual_seed(seed)
    pipe = StableDiffusionPipeline(
        vae=_vae(_SD_SAMPLE_SIZE, scaling_factor=0.18215),
        text_encoder=CLIPTextModel(_text_config(len(tokenizer))),
        tokenizer=tokenizer,
        unet=_unet(_SD_SAMPLE_SIZE, cross_attention_dim=_TEXT_HIDDEN),
        scheduler=_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def build_tiny_taesd(path: Path, *, seed: int = 0) -> Path:
    """Write a random-weight tiny autoencoder (AutoencoderTiny, TAESD's layout: x8, 4 latent
    channels) to `path`, as the hub's `madebyollin/taesd` holds it: config.json and safetensors at
    the top. Returns `path`."""
    path = Path(path)
    torch.manual_seed(seed)
    AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
    ).save_pretrained(path, safe_serialization=True)
    return path


def build_tiny_sdxl(path: Path, *, seed: int = 0) -> Path:
    """Write a random-weight SDXL pipeline (StableDiffusionXLPipeline, 512 px native) to `path`.

    Weights depend only on `seed`. Returns `path`.
    """
    path = Path(path)
    tokenizer = _write_tokenizer(path / "tokenizer")
    tokenizer_2 = _write_tokenizer(path / "tokenizer_2")
    torch.manual_seed(seed)
    text_config = _text_config(len(tokenizer))
    pipe = StableDiffusionXLPipeline(
        vae=_vae(_SDXL_SAMPLE_SIZE, scaling_factor=0.13025),
        text_encoder=CLIPTextModel(text_config),
        text_encoder_2=CLIPTextModelWithProjection(text_config),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        # SDXL cross-attends to both encoders' hidden states concatenated, and adds the pooled
        # projection of encoder 2 (projection_dim: _TEXT_HIDDEN) plus six size/crop ids to the time
        # embedding.
        unet=_unet(
            _SDXL_SAMPLE_SIZE,
            cross_attention_dim=2 * _TEXT_HIDDEN,
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=_TIME_EMBED_DIM,
            projection_class_embeddings_input_dim=_TEXT_HIDDEN + 6 * _TIME_EMBED_DIM,
        ),
        scheduler=_scheduler(),
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def build_tiny_zimage(path: Path, *, seed: int = 0, native_side: int = _ZIMAGE_NATIVE_SIDE) -> Path:
    """Write a random-weight Z-Image pipeline (ZImagePipeline) to `path`, native at `native_side`
    pixels (256 by default; 1024, the real model's, where a test needs the real sizes).

    Weights depend only on `seed`. Returns `path`.
    """
    path = Path(path)
    tokenizer = _qwen_tokenizer(path / "tokenizer")
    torch.manual_seed(seed)
    head_dim = _QWEN_HIDDEN // 2
    pipe = ZImagePipeline(
        # Z-Image decodes with FLUX.1's autoencoder: 16 latent channels, a shift and a scale.
        vae=_vae(
            native_side // 8,
            scaling_factor=0.3611,
            latent_channels=16,
            shift_factor=0.1159,
            use_quant_conv=False,
            use_post_quant_conv=False,
        ),
        text_encoder=Qwen3Model(_qwen_config(len(tokenizer), layers=2)),
        tokenizer=tokenizer,
        transformer=ZImageTransformer2DModel(
            in_channels=16,
            dim=_QWEN_HIDDEN,
            n_layers=2,
            n_refiner_layers=1,
            n_heads=2,
            n_kv_heads=2,
            cap_feat_dim=_QWEN_HIDDEN,
            # The three rotary axes (caption/frame, height, width) split one head's width.
            axes_dims=[head_dim // 4, 3 * head_dim // 8, 3 * head_dim // 8],
        ),
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def build_tiny_flux2_klein(path: Path, *, seed: int = 0) -> Path:
    """Write a random-weight FLUX.2 klein pipeline (Flux2KleinPipeline, step-distilled) to `path`.

    The pipeline fixes its native size at 128 latents; a two-block (x2) autoencoder makes that
    256 px, where the real x8 one would make every test image a 1024 px decode.
    Weights depend only on `seed`. Returns `path`.
    """
    path = Path(path)
    tokenizer = _qwen_tokenizer(path / "tokenizer")
    torch.manual_seed(seed)
    latent_channels = 8
    pipe = Flux2KleinPipeline(
        vae=AutoencoderKLFlux2(
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            block_out_channels=(8, 16),
            layers_per_block=1,
            latent_channels=latent_channels,
            norm_num_groups=4,
            mid_block_add_attention=False,
        ),
        text_encoder=Qwen3ForCausalLM(_qwen_config(len(tokenizer), layers=max(_KLEIN_TEXT_LAYERS))),
        tokenizer=tokenizer,
        # Latents are packed in 2x2 patches; the text condition is the three hidden states side by
        # side; klein is guidance-distilled, so no guidance embedding.
        transformer=Flux2Transformer2DModel(
            in_channels=4 * latent_channels,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            # One head: at the fixed 4,096 image tokens, attention is most of a step's cost.
            num_attention_heads=1,
            joint_attention_dim=len(_KLEIN_TEXT_LAYERS) * _QWEN_HIDDEN,
            timestep_guidance_channels=32,
            axes_dims_rope=(4, 4, 4, 4),
            guidance_embeds=False,
        ),
        scheduler=FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True
        ),
        is_distilled=True,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def build_tiny_qwen_image(path: Path, *, seed: int = 0) -> Path:
    """Write a random-weight Qwen-Image pipeline (QwenImagePipeline) to `path`.

    The pipeline fixes its native size at 128 latents; a one-stage (x2) autoencoder makes that
    256 px. Weights depend only on `seed`. Returns `path`.
    """
    path = Path(path)
    tokenizer = _qwen_tokenizer(path / "tokenizer")
    torch.manual_seed(seed)
    latent_channels = 16
    head_dim = 16
    # The multimodal encoder's vision tower is never run for text-to-image, so it is the smallest
    # that builds; the text rotary sections (temporal, height, width) split half a head.
    text_encoder = Qwen2_5_VLForConditionalGeneration(
        Qwen2_5_VLConfig(
            text_config={
                "vocab_size": len(tokenizer),
                "hidden_size": _QWEN_HIDDEN,
                "intermediate_size": 2 * _QWEN_HIDDEN,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "num_key_value_heads": 2,
                "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
                "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
                "rope_parameters": {"mrope_section": [2, 3, 3], "rope_type": "default"},
            },
            vision_config={
                "depth": 1,
                "hidden_size": 16,
                "intermediate_size": 16,
                "num_heads": 2,
                "out_hidden_size": _QWEN_HIDDEN,
            },
        )
    )
    pipe = QwenImagePipeline(
        vae=AutoencoderKLQwenImage(
            base_dim=16,
            z_dim=latent_channels,
            dim_mult=[1, 2],
            num_res_blocks=1,
            temperal_downsample=[False],
            latents_mean=[0.0] * latent_channels,
            latents_std=[1.0] * latent_channels,
        ),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=QwenImageTransformer2DModel(
            patch_size=2,
            in_channels=4 * latent_channels,
            out_channels=latent_channels,
            num_layers=1,
            attention_head_dim=head_dim,
            # One head: at the fixed 4,096 image tokens, attention is most of a step's cost.
            num_attention_heads=1,
            joint_attention_dim=_QWEN_HIDDEN,
            axes_dims_rope=(head_dim // 4, 3 * head_dim // 8, 3 * head_dim // 8),
        ),
        scheduler=FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True
        ),
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def _qwen_tokenizer(folder: Path) -> Qwen2Tokenizer:
    """A byte-level BPE with Qwen's special tokens and chat format, learnt from a few prompts;
    its vocab.json and merges.txt are written to `folder`, where the pipeline saves it too."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=_QWEN_SPECIAL_TOKENS,
        show_progress=False,
    )
    bpe.train_from_iterator(_TOKENIZER_CORPUS, trainer)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file, merges_file = bpe.model.save(str(folder))
    tokenizer = Qwen2Tokenizer(
        vocab=vocab_file,
        merges=merges_file,
        additional_special_tokens=_QWEN_SPECIAL_TOKENS[1:],
        model_max_length=512,
    )
    tokenizer.chat_template = _QWEN_CHAT_TEMPLATE
    return tokenizer


def _qwen_config(vocab_size: int, *, layers: int) -> Qwen3Config:
    """A narrow Qwen3 decoder: two heads of 16, `layers` deep."""
    return Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=_QWEN_HIDDEN,
        intermediate_size=2 * _QWEN_HIDDEN,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=_QWEN_HIDDEN // 2,
        max_position_embeddings=1024,
    )


def _write_tokenizer(folder: Path) -> CLIPTokenizer:
    """Write a character-level CLIP vocabulary (vocab.json, merges.txt) to `folder` and load it."""
    folder.mkdir(parents=True, exist_ok=True)
    # Each character alone (inside a word) and with `</w>` (ending a word); no merges are needed.
    tokens = _CHARS + [char + "</w>" for char in _CHARS] + [_BOS, _EOS]
    vocab = {token: index for index, token in enumerate(tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    # Without an explicit length the tokenizer's default overflows the pipeline's truncation.
    tokenizer: CLIPTokenizer = CLIPTokenizer.from_pretrained(folder, model_max_length=_MAX_TOKENS)
    return tokenizer


def _text_config(vocab_size: int) -> CLIPTextConfig:
    """A two-layer CLIP text encoder config; the special tokens sit at the end of the vocabulary."""
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=_TEXT_HIDDEN,
        intermediate_size=2 * _TEXT_HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=_MAX_TOKENS,
        projection_dim=_TEXT_HIDDEN,
        hidden_act="quick_gelu",
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )


def _vae(
    latent_size: int, *, scaling_factor: float, latent_channels: int = 4, **extra: object
) -> AutoencoderKL:
    """A VAE with four blocks, hence the real x8 downsampling, and narrow channels."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=4,
        sample_size=latent_size * 8,
        scaling_factor=scaling_factor,
        # Mid-block self-attention over every latent pixel would dominate the cost at large sizes.
        mid_block_add_attention=False,
        **extra,
    )


def _unet(sample_size: int, *, cross_attention_dim: int, **extra: object) -> UNet2DConditionModel:
    """A two-level UNet; cross-attention only at the coarser level keeps attention cheap."""
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        cross_attention_dim=cross_attention_dim,
        # Read by diffusers as the head count: two heads of width 16. Narrower heads make CPU
        # attention (1,024 tokens at 512 px) the bulk of a step.
        attention_head_dim=2,
        **extra,
    )


def _scheduler() -> EulerDiscreteScheduler:
    """Euler with the beta schedule and timestep spacing that SD 1.5 and SDXL ship with."""
    return EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        timestep_spacing="leading",
        steps_offset=1,
    )


def build_tiny_matting(directory: Path, *, seed: int = 0) -> Path:
    """A random-weight background-matting model in the layout of onnx-community's BiRefNet
    exports: `onnx/model.onnx` taking `input_image` (1x3x1024x1024, normalised RGB) to
    `output_image` (1x1x1024x1024 logits), and its `preprocessor_config.json`. Two 3x3
    convolutions stand in for BiRefNet, so its matte varies across the image as a real one does."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from easel.engine.matting import IMAGENET_MEAN, IMAGENET_STD, MODEL_FILE, PREPROCESSOR_FILE

    side = 1024
    hidden = 4
    rng = np.random.default_rng(seed)
    weights = [
        numpy_helper.from_array(array.astype(np.float32), name)
        for name, array in (
            ("conv1.weight", rng.normal(0, 0.3, (hidden, 3, 3, 3))),
            ("conv1.bias", rng.normal(0, 0.1, hidden)),
            ("conv2.weight", rng.normal(0, 0.3, (1, hidden, 3, 3))),
            ("conv2.bias", np.zeros(1)),
        )
    ]

    def conv(inputs: list[str], output: str) -> onnx.NodeProto:
        # 3x3, padded to keep the size.
        return helper.make_node("Conv", inputs, [output], kernel_shape=[3, 3], pads=[1, 1, 1, 1])

    graph = helper.make_graph(
        [
            conv(["input_image", "conv1.weight", "conv1.bias"], "hidden"),
            helper.make_node("Relu", ["hidden"], ["hidden_relu"]),
            conv(["hidden_relu", "conv2.weight", "conv2.bias"], "output_image"),
        ],
        "tiny_birefnet",
        [helper.make_tensor_value_info("input_image", TensorProto.FLOAT, [1, 3, side, side])],
        [helper.make_tensor_value_info("output_image", TensorProto.FLOAT, [1, 1, side, side])],
        initializer=weights,
    )
    # IR version 8 goes with opset 17, which every ONNX Runtime of the last years reads.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    (directory / MODEL_FILE).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, directory / MODEL_FILE)
    (directory / PREPROCESSOR_FILE).write_text(
        json.dumps(
            {
                "do_normalize": True,
                "do_rescale": True,
                "do_resize": True,
                "image_mean": list(IMAGENET_MEAN),
                "image_std": list(IMAGENET_STD),
                "rescale_factor": 1 / 255,
                "size": {"width": side, "height": side},
            },
            indent=2,
        )
    )
    return directory
