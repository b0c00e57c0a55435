"""`easel bench`: the raw diffusers pipeline against the Easel server at rising concurrency, PNG
encoders, and on CUDA the real SD 1.5 / SDXL architectures with model FLOP utilisation."""
