"""The sim twin (``robot_rl.sim``): MuJoCo / robosuite robots and tasks, MJCF assets,
scripted experts. The only place in robot_rl that imports MuJoCo."""
