"""The engine: loads diffusers pipelines and runs generations; imports nothing from the web layer."""
