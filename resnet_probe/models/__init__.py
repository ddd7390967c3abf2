"""Getting a model: spec, registry and zoo, loading, checkpoint formats, hub builders, cache, published weights."""

from resnet_probe.models import zoo  # noqa: F401  (the zoo registers its networks; torch-free)
