"""Data interop (``robot_rl.interop``): other formats in and out of episode stores.

LeRobotDataset v3 export/import, robomimic HDF5 import, rosbag2/MCAP import, and the
episode report/viewer. Each module imports its format library lazily and names the
``pip install robot-rl[<extra>]`` line when it is missing. ``robot_rl/data`` never
imports from here.
"""
