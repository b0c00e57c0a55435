"""POST /v1/images/generations: request models, generation logic and the route."""
