"""Policies: each observes snapshots and returns decisions (trim, detector, memray); none emits."""
