#!/usr/bin/env python
"""Convert an original owl-wms checkpoint. Run with --help; the code lives in tekken_diffusers.cli.convert_owl_wms."""

from tekken_diffusers.cli.convert_owl_wms import main

if __name__ == "__main__":
    raise SystemExit(main())
