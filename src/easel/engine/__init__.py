"""The engine: loads diffusers pipelines and runs generations. It imports nothing from the web
layer or the server's settings: whoever assembles it passes its configuration in."""
