"""Free generation with a mode's heads (see `decoder`): `generate(model, tokenizer, prompts, settings)`."""

from likra.generation.decoder import Generation, GenerationSettings, HeadDecoder, generate

__all__ = ["Generation", "GenerationSettings", "HeadDecoder", "generate"]
