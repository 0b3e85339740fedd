"""Label quality: labeled masks scored against ground-truth instance masks (SAMRS Table 1).

- `metrics`: per-instance intersection and union, and the paper's means mIoU_I and mIoU_P;
- `truth`: which sources have ground-truth masks, and those masks cut to an image or tile;
- `evaluate`: a labeled subset (instances.json) against its source, image by image -> quality.json;
- `table`: the quality.json files of many runs as the paper's Table 1 (markdown and CSV).

See docs/label_quality.md.
"""
