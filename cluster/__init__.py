"""Models, GPUs and placement: the catalog of model and GPU facts, and the pure planner that
lays a model out over GPUs (tensor parallel inside a node, pipeline stages across nodes).
Nothing in this package talks to Ray or starts vLLM."""
