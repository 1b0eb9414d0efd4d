"""Reading the lake: user SQL, result formats, exports, statistics, lake info."""
