"""From survey files to the lake: ECSV reading, source discovery, convert."""
