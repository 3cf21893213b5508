"""Reviews -> explanation records, splits, item profiles and user histories."""
