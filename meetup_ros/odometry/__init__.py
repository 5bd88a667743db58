"""odometry."""
