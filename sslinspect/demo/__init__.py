"""Built-in demo data: a deterministic synthetic production-line image generator (metal and fabric parts)."""

from sslinspect.demo.dataset import DemoDataset, contact_sheet, generate_all, generate_demo
from sslinspect.demo.synth import DEFECTS, PRODUCTS, render

__all__ = ["DEFECTS", "PRODUCTS", "DemoDataset", "contact_sheet", "generate_all", "generate_demo", "render"]
