# Lets `DiffusionPipeline.from_pretrained(dir, custom_pipeline=dir, trust_remote_code=True)` find the
# class; it runs the installed tekken-diffusers package, nothing else.
from tekken_diffusers.pipelines.pipeline_tekken import TekkenWorldModelPipeline  # noqa: F401
