"""Backbones of the official SAMRS model zoo that timm does not ship, each registered with timm under
its name (`timm.create_model("vitaev2_s")`, `TimmBackbone(name="vitaev2_s")`). Importing this package
registers them; `samrs.models` imports it."""
from samrs.models.backbones import swin_t  # noqa: F401
from samrs.models.backbones import vit_b  # noqa: F401
