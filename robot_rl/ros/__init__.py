"""ROS 2 adapters (the only package of robot_rl that imports rclpy).

Nodes are thin: they translate messages and call the library (``GuardedRobot``,
``EpisodeWriter``, policies). Topic contract per robot namespace (DESIGN.md):

| topic | type | QoS | from |
| --- | --- | --- | --- |
| ``joint_states`` | sensor_msgs/JointState | sensor data | robot node (arms) |
| ``odom`` | nav_msgs/Odometry | sensor data | robot node (bases) |
| ``state/<obs name>`` | sensor_msgs/JointState (stamped named vector) | sensor data | robot node |
| ``<cam>/image_raw`` | sensor_msgs/Image rgb8 | sensor data | robot node (twin cameras) |
| ``action_sent`` | sensor_msgs/JointState (stamped named vector) | reliable | robot node: the action actually sent, stamped with the observation it was applied in |
| ``task`` | sensor_msgs/JointState (reward, success, failure) | reliable | robot node (sim twins) |
| ``robot_spec`` | std_msgs/String (JSON) | reliable, transient local | robot node |
| ``commands`` | std_msgs/Float64MultiArray | reliable, deadline | teleop / policy |
| ``cmd_vel`` | geometry_msgs/Twist | reliable, deadline | teleop / policy (bases) |
| ``estop`` | std_msgs/Bool | reliable, transient local | anyone |

Vectors with no standard stamped message are sent as JointState with ``name`` = element
names and ``position`` = values, a common ROS convention for stamped named vectors.
"""
