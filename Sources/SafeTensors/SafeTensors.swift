/// The safetensors checkpoint format: a validated, zero-copy (mmap) reader and a writer.
