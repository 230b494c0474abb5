"""Hardware backends (``robot_rl.drivers``): one module per robot family.

Vendor SDKs are imported lazily inside each driver, with a message naming the
``pip install robot-rl[<extra>]`` line when missing. Drivers arrive with the
real-hardware issue; this package is installed now so the layout is stable.
"""
