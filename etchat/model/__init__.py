"""The E.T. Chat model: EVA-ViT-g, Q-Former frame compressor, an HF causal LM, `<vid>` matching.

Public API:
- configs: `ETChatPhi3Config` (model_type `etchat_phi3`), `ETChatLlamaConfig`, `ETChatQwen2Config`,
  `phi3_mini_config(stage)`, `tiny_config(name, vocab_size=..., ...)`, `tiny_config_for(tokenizer, name)`;
- models: `ETChatPhi3ForCausalLM` (and Llama/Qwen2), `forward(...) -> ETChatCausalLMOutput` with `loss`, `lm_loss`,
  `match_loss`; `generate(...) -> ETChatGeneration`; `detokenize(...)`;
- tokenizers: `build_demo_tokenizer(texts, out_dir)`, `add_match_token`, `load_qformer_tokenizer`;
- weights: `load_base_weights`, `build_from_base`, `save_checkpoint`, `load_checkpoint`;
- constants: `IMAGE_TOKEN_INDEX` (-200), `IGNORE_INDEX` (-100), `MATCH_TOKEN` (`<vid>`).
"""

from .config import ETChatFieldsConfig, ETChatLlamaConfig, ETChatPhi3Config, ETChatQwen2Config
from .constants import IGNORE_INDEX, IMAGE_TOKEN, IMAGE_TOKEN_INDEX, MATCH_TOKEN, PHI3_MATCH_TOKEN_ID
from .generation import ETChatGeneration, detokenize, generate
from .modeling import (
    MODEL_CLASSES,
    ETChatCausalLMOutput,
    ETChatForCausalLM,
    ETChatLlamaForCausalLM,
    ETChatPhi3ForCausalLM,
    ETChatQwen2ForCausalLM,
    build_model,
    register_auto_classes,
)
from .presets import original_tiny_config, phi3_mini_config, tiny_config, tiny_config_for
from .qformer import load_qformer_tokenizer
from .tokenizer import add_match_token, build_demo_tokenizer, match_token_id
from .weights import (
    CheckpointError,
    build_from_base,
    load_base_weights,
    load_checkpoint,
    read_state_dict,
    save_checkpoint,
)

__all__ = [
    "IGNORE_INDEX",
    "IMAGE_TOKEN",
    "IMAGE_TOKEN_INDEX",
    "MATCH_TOKEN",
    "MODEL_CLASSES",
    "PHI3_MATCH_TOKEN_ID",
    "CheckpointError",
    "ETChatCausalLMOutput",
    "ETChatFieldsConfig",
    "ETChatForCausalLM",
    "ETChatGeneration",
    "ETChatLlamaConfig",
    "ETChatLlamaForCausalLM",
    "ETChatPhi3Config",
    "ETChatPhi3ForCausalLM",
    "ETChatQwen2Config",
    "ETChatQwen2ForCausalLM",
    "add_match_token",
    "build_demo_tokenizer",
    "build_from_base",
    "build_model",
    "detokenize",
    "generate",
    "load_base_weights",
    "load_checkpoint",
    "load_qformer_tokenizer",
    "match_token_id",
    "original_tiny_config",
    "phi3_mini_config",
    "read_state_dict",
    "register_auto_classes",
    "save_checkpoint",
    "tiny_config",
    "tiny_config_for",
]
