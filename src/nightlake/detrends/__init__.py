"""The detrend side: the DetReg database, its rules, its mirror, detsearch."""
