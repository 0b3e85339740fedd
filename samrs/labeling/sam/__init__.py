"""SAM labeling engine: builds, prompts, frames, the re-arranged decoder, the engine and SamLabeler."""
