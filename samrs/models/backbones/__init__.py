"""Backbones of the official SAMRS model zoo that timm does not ship, each registered with timm under
its name (`timm.create_model("vitaev2_s")`, `TimmBackbone(name="vitaev2_s")`). Importing this package
registers them; `samrs.models` imports it."""
from samrs.models.backbones import swin_t  # noqa: F401
from samrs.models.backbones import vit_b  # noqa: F401
from samrs.models.backbones import vitaev2  # noqa: F401
from samrs.models.backbones import internimage  # noqa: F401  (internimage_t)
from samrs.models.backbones import vit_adapter  # noqa: F401
from samrs.models.backbones import vit_rvsa  # noqa: F401
